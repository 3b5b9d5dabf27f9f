"""Bad input is refused before any query runs, with a stable code and a message naming the value."""

from __future__ import annotations

import pytest

from flows.control import errors
from flows.control.registry import ColumnType, Dataset, Registry
from flows.datapath.request import ExportRequest, Filter, parse_request, plan_export
from tests.flows.helpers import limits


def plan(registry, settings=None, **kw):
    """Plan a request given in its JSON form, as the API receives it."""
    return plan_export(parse_request({"module": "products", **kw}), registry, settings or limits(5))


def flt(column, op, value):
    return {"column": column, "op": op, "value": value}


@pytest.mark.parametrize(
    ("kw", "error", "named"),
    [
        ({"module": "nope"}, errors.UnknownModule, "nope"),
        ({"columns": ["id", "secret"]}, errors.ColumnNotAllowed, "secret"),
        ({"columns": ["id", "cost_price"]}, errors.ColumnNotAllowed, "cost_price"),
        ({"columns": []}, errors.EmptyColumns, "empty"),
        ({"columns": ["id", "id"]}, errors.ColumnNotAllowed, "twice"),
        (
            {"filters": [flt("supplier_email", "eq", "x")]},
            errors.FilterNotAllowed,
            "supplier_email",
        ),
        ({"filters": [flt("price", "like", "1")]}, errors.UnknownOperator, "like"),
        ({"filters": [flt("price", "gte", "abc")]}, errors.InvalidFilterValue, "abc"),
        ({"filters": [flt("id", "in", [])]}, errors.InvalidFilterValue, "non-empty"),
        ({"filters": [flt("external_id", "eq", "not-a-uuid")]}, errors.InvalidFilterValue, "uuid"),
        ({"from": "2024-13-45"}, errors.InvalidDate, "2024-13-45"),
        ({"to": "yesterday"}, errors.InvalidDate, "yesterday"),
        ({"to": "9999-12-31"}, errors.InvalidDate, "outside the dates"),
        ({"from": "0001-01-01T00:00:00+14:00"}, errors.InvalidDate, "years 1-9999"),
        ({"from": "2024-02-01", "to": "2024-01-01"}, errors.InvalidDateRange, "before"),
        ({"timezone": "Mars/Olympus"}, errors.InvalidTimezone, "Mars/Olympus"),
        ({"ids": list(range(6))}, errors.TooManyIds, "6 ids"),
        ({"ids": ["x"]}, errors.InvalidFilterValue, "'x'"),
        ({"format": "pdf"}, errors.UnsupportedFormat, "pdf"),
        ({"delimiter": '"'}, errors.InvalidOption, "delimiter"),
        ({"delimiter": "ab"}, errors.InvalidOption, "'ab'"),
        ({"format": "xlsx", "gzip": True}, errors.InvalidOption, "XLSX is already compressed"),
        ({"colour": "red"}, errors.InvalidRequest, "colour: unknown field"),
    ],
)
def test_bad_input_is_refused_with_code_and_named_value(registry, kw, error, named):
    with pytest.raises(error) as info:
        plan(registry, **kw)
    assert info.value.code == error.code
    assert named in info.value.message
    assert isinstance(info.value, errors.InvalidRequest)


def test_a_misspelt_filter_field_is_refused_not_read_as_eq(registry):
    with pytest.raises(errors.InvalidRequest, match=r"filters\.0\.op"):
        plan(registry, filters=[{"column": "price", "operator": "gte", "value": "10"}])
    with pytest.raises(errors.InvalidRequest, match=r"filters\.0\.operator: unknown field"):
        plan(registry, filters=[{"column": "price", "op": "gte", "operator": "x", "value": "1"}])
    # Built by hand (the command line does) the codes are the same.
    with pytest.raises(errors.UnknownOperator, match="'near'"):
        Filter(column="price", op="near", value="1")
    with pytest.raises(errors.UnsupportedFormat):
        ExportRequest(module="products", format="ods")


def test_openapi_schema_lists_the_allowed_values():
    schema = ExportRequest.model_json_schema()
    props = schema["properties"]
    assert props["format"]["enum"] == ["csv", "xlsx"]
    # None: the locale's delimiter, else ','.
    assert props["delimiter"]["anyOf"][0]["enum"] == [",", ";", "\t", "|"]
    assert props["decimal_separator"]["anyOf"][0]["enum"] == [".", ","]
    assert schema["$defs"]["FilterSpec"]["properties"]["op"]["enum"] == [
        "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between",
        "contains", "starts_with", "is_null", "not_null",
    ]  # fmt: skip
    assert schema["$defs"]["FilterSpec"]["required"] == ["column", "op"]
    assert schema["$defs"]["AnyGroup"]["required"] == ["any"]
    assert schema["$defs"]["SortSpec"]["properties"]["direction"]["enum"] == ["asc", "desc"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("bounds", "kw", "error", "named"),
    [
        (
            {"max_filters": 2},
            {"filters": [flt("id", "gte", 1)] * 3},
            errors.InvalidRequest,
            "at most 2",
        ),
        (
            {"max_in_values": 3},
            {"filters": [flt("id", "in", [1, 2, 3, 4])]},
            errors.InvalidFilterValue,
            "4 values, at most 3",
        ),
        (
            {"max_columns": 2},
            {"columns": ["id", "sku", "name"]},
            errors.InvalidRequest,
            "at most 2",
        ),
        (
            {"max_value_chars": 10},
            {"filters": [flt("name", "contains", "x" * 11)]},
            errors.InvalidFilterValue,
            "11 characters long, at most 10",
        ),
        ({"max_value_chars": 3}, {"ids": ["1234"]}, errors.InvalidFilterValue, "at most 3"),
    ],
)
def test_every_list_and_text_is_bounded_by_settings(registry, bounds, kw, error, named):
    with pytest.raises(error) as info:
        plan(registry, limits(10, **bounds), **kw)
    assert type(info.value) is error and named in info.value.message


TYPED = Registry(
    modules={
        "typed": Dataset(
            name="typed",
            table="typed",
            key="code",
            date_column="naive",
            permission="p",
            columns=dict.fromkeys(
                ("code", "small", "name", "price", "ratio", "flags", "mood", "naive", "ts", "day")
            ),
            types={
                "code": ColumnType(pg_type="character(8)"),
                "small": ColumnType(pg_type="smallint"),
                "name": ColumnType(pg_type="character varying(20)"),
                "price": ColumnType(pg_type="numeric(12,2)", base_type="numeric"),
                "ratio": ColumnType(pg_type="real"),
                "flags": ColumnType(pg_type="bit(4)", base_type="bit"),
                "mood": ColumnType(pg_type="mood", labels=["ok", "=1+2"]),
                "naive": ColumnType(pg_type="timestamp without time zone"),
                "ts": ColumnType(pg_type="timestamp with time zone"),
                "day": ColumnType(pg_type="date"),
            },
        )
    }
)


@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("small", "40000", "outside -32768..32767"),
        ("small", "1_000", "smallint"),
        ("code", "ABCDEFGHI", "longer than 8"),
        ("name", "x" * 21, "longer than 20"),
        ("price", "1.005", "more than 2 decimal places"),
        ("price", "12345678901", "more than 10 digits"),
        ("price", "Infinity", "infinity"),
        ("ratio", "1e39", "out of range"),
        ("flags", "101", "exactly 4 bits"),
        ("flags", "10a1", "bit(4)"),
        ("mood", "bad", "not one of: ok, =1+2"),
        ("naive", "2024-02-30", "timestamp"),
        ("day", "2024-01-01T10:00", "give a date"),
    ],
)
def test_values_are_typed_by_column(column, value, why):
    with pytest.raises(errors.InvalidFilterValue) as info:
        plan(TYPED, module="typed", filters=[flt(column, "eq", value)])
    assert column in info.value.message and repr(value) in info.value.message
    assert why in info.value.message


def test_good_values_keep_their_meaning():
    p = plan(
        TYPED,
        module="typed",
        filters=[
            flt("code", "eq", "ab"),
            flt("price", "lte", "1.50"),
            flt("mood", "in", ["=1+2"]),
            flt("small", "gte", -32768),
        ],
        ids=["abcdefgh"],
    )
    got = [(c.column, c.pg_type, c.op, c.values) for c in p.conditions]
    assert got == [
        ("code", "character(8)", "eq", ["ab"]),
        ("price", "numeric(12,2)", "lte", ["1.50"]),
        ("mood", "mood", "in", ["=1+2"]),
        ("small", "smallint", "gte", ["-32768"]),
        ("code", "character(8)", "in", ["abcdefgh"]),
    ]


def test_sensitive_columns_never_in_default_columns(registry):
    names = [c.name for c in plan(registry).columns]
    assert "cost_price" not in names and "supplier_email" not in names
    assert names[0] == "id"


def test_codes_are_stable_and_unique():
    codes = [
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ExportflowError)
    ]
    assert len(codes) == len(set(codes))
    assert errors.UnknownModule("x").to_dict() == {"code": "unknown_module", "message": "x"}


@pytest.mark.parametrize("name", ["posixrules", "localtime", "Factory", "right/UTC", ""])
def test_zones_the_engine_cannot_convert_to_are_refused(registry, name):
    with pytest.raises(errors.InvalidTimezone):
        plan(registry, timezone=name)


def test_date_range_is_whole_days_in_the_request_zone(registry):
    p = plan(registry, **{"from": "2024-01-01", "to": "2024-01-01", "timezone": "Europe/Berlin"})
    bounds = {c.op: c.values[0] for c in p.conditions}
    assert bounds == {"gte": "2024-01-01T00:00:00+01:00", "lt": "2024-01-02T00:00:00+01:00"}


def test_naive_timestamps_are_wall_clock_never_converted():
    def bounds(**kw):
        p = plan(TYPED, module="typed", timezone="Europe/Berlin", **kw)
        return [(c.column, c.op, c.values[0]) for c in p.conditions]

    # Without an offset: wall-clock time, as stored.
    assert bounds(**{"from": "2024-07-01", "to": "2024-07-01T12:30"}) == [
        ("naive", "gte", "2024-07-01T00:00:00"),
        ("naive", "lt", "2024-07-01T12:30:00"),
    ]
    # With an offset: that instant, as wall-clock time in the request's zone.
    assert bounds(**{"from": "2024-07-01T00:00Z"}) == [("naive", "gte", "2024-07-01T02:00:00")]
    # A date on a timestamp filter means its whole day; on a timestamptz, in the zone.
    assert bounds(filters=[flt("naive", "eq", "2024-07-01")]) == [
        ("naive", "gte", "2024-07-01T00:00:00"),
        ("naive", "lt", "2024-07-02T00:00:00"),
    ]
    assert bounds(filters=[flt("ts", "lte", "2024-07-01")]) == [
        ("ts", "lt", "2024-07-02T00:00:00+02:00")
    ]
    assert bounds(filters=[flt("ts", "gte", "2024-07-01T09:00+00:00")]) == [
        ("ts", "gte", "2024-07-01T09:00:00+00:00")
    ]


def test_date_range_on_module_without_date_column_is_refused(registry):
    registry.modules["tags"].date_column, saved = None, registry.modules["tags"].date_column
    try:
        with pytest.raises(errors.InvalidDateRange, match="no date column"):
            plan(registry, module="tags", **{"from": "2024-01-01"})
    finally:
        registry.modules["tags"].date_column = saved
