"""Request rules without a database: messages that name what is wrong, and conditions
that keep the user's meaning (a hand-built registry, as the catalog would fill it)."""

from __future__ import annotations

import pytest

from flows.control import errors
from flows.control.registry import ColumnType, Dataset, Registry
from flows.control.settings import Settings
from flows.datapath.keyset import ChunkSizing
from flows.datapath.request import ExportRequest, parse_request, plan_export
from tests.flows.helpers import limits

REGISTRY = Registry(
    modules={
        "items": Dataset(
            name="items",
            table="items",
            key="id",
            permission="p",
            columns={"id": None, "price": None, "name": None},
            types={
                "id": ColumnType(pg_type="integer"),
                "price": ColumnType(pg_type="numeric(6,2)", base_type="numeric"),
                "name": ColumnType(pg_type="text"),
            },
        ),
        "events": Dataset(
            name="events",
            table="events",
            key="at",
            permission="p",
            columns={"at": None, "n": None},
            types={
                "at": ColumnType(pg_type="timestamp with time zone"),
                "n": ColumnType(pg_type="integer"),
            },
        ),
    }
)


def plan(**kw):
    return plan_export(parse_request({"module": "items", **kw}), REGISTRY, limits())


def refused(error: type, **kw) -> str:
    with pytest.raises(error) as info:
        plan(**kw)
    assert type(info.value) is error
    return info.value.message


def flt(column, op, value):
    return {"column": column, "op": op, "value": value}


def test_a_request_that_is_not_an_object_is_refused_as_a_whole():
    for data in ("items", ["items"], None):
        with pytest.raises(errors.InvalidRequest) as info:
            parse_request(data)
        assert info.value.message.startswith("request: ")


def test_messages_list_what_is_allowed():
    assert refused(errors.UnknownOperator, filters=[flt("id", "like", 1)]) == (
        "unknown filter operator 'like'; use one of: eq, neq, in, not_in, gt, gte, lt, lte, "
        "between, contains, starts_with, is_null, not_null"
    )
    assert refused(errors.InvalidOption, delimiter="ab") == (
        "delimiter 'ab' must be one of ',', ';', '\\t', '|'"
    )
    assert refused(errors.FilterNotAllowed, filters=[flt("secret", "eq", 1)]) == (
        "cannot filter on column 'secret' in module 'items'; filter on one of: id, price, name"
    )
    assert refused(errors.InvalidRequest, ids=[]) == (
        "the id list is empty; select at least one row or omit ids"
    )
    assert refused(errors.InvalidFilterValue, filters=[flt("name", "contains", ["a", "b"])]) == (
        "filter 'contains' on 'name' takes one value"
    )


def test_bad_values_in_lists_name_their_column():
    assert refused(errors.InvalidFilterValue, ids=[1, "x"]) == (
        "value 'x' for column 'id' is not a valid integer"
    )
    assert refused(errors.InvalidFilterValue, filters=[flt("price", "in", ["1", "1.234"])]) == (
        "value '1.234' for column 'price' is not a valid numeric(6,2): "
        "it has more than 2 decimal places"
    )


def test_contains_matches_the_text_of_any_column():
    p = plan(filters=[flt("price", "contains", "1.5"), flt("id", "contains", "9x")])
    assert [(c.column, c.pg_type, c.op, c.values) for c in p.conditions] == [
        ("price", "text", "contains", ["1.5"]),
        ("id", "text", "contains", ["9x"]),
    ]


def test_ids_on_a_timestamp_key_are_instants_in_the_request_zone():
    req = ExportRequest(module="events", ids=["2024-07-01T10:00"], timezone="Europe/Berlin")
    (cond,) = plan_export(req, REGISTRY, limits()).conditions
    assert (cond.column, cond.op, cond.values) == ("at", "in", ["2024-07-01T10:00:00+02:00"])


def test_a_resumed_run_keeps_the_chunk_size_measured_before():
    settings = Settings(_env_file=None, chunk_rows=500, chunk_bytes=100_000, first_chunk_rows=7)
    fresh = ChunkSizing.from_settings(settings)
    assert (fresh.max_rows, fresh.target_bytes, fresh.first_rows, fresh.limit) == (
        500,
        100_000,
        7,
        None,
    )
    assert fresh.next_limit == 7
    resumed = ChunkSizing.from_settings(settings, limit=40)
    assert resumed.limit == 40 and resumed.next_limit == 40
