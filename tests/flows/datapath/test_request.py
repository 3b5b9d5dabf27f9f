"""Bad input is refused before any query runs, with a stable code and a message naming the value."""

from __future__ import annotations

import pytest

from flows.control import errors
from flows.datapath.request import ExportRequest, Filter, plan_export
from tests.flows.helpers import limits


def plan(registry, **kw):
    return plan_export(ExportRequest(**{"module": "products", **kw}), registry, limits(5))


@pytest.mark.parametrize(
    ("kw", "error", "named"),
    [
        ({"module": "nope"}, errors.UnknownModule, "nope"),
        ({"columns": ["id", "secret"]}, errors.ColumnNotAllowed, "secret"),
        ({"columns": ["id", "cost_price"]}, errors.ColumnNotAllowed, "cost_price"),
        ({"columns": []}, errors.EmptyColumns, "empty"),
        ({"columns": ["id", "id"]}, errors.ColumnNotAllowed, "twice"),
        (
            {"filters": [Filter(column="supplier_email", value="x")]},
            errors.FilterNotAllowed,
            "supplier_email",
        ),
        (
            {"filters": [Filter(column="price", op="like", value="1")]},
            errors.UnknownOperator,
            "like",
        ),
        (
            {"filters": [Filter(column="price", op="gte", value="abc")]},
            errors.InvalidFilterValue,
            "abc",
        ),
        (
            {"filters": [Filter(column="id", op="in", value=[])]},
            errors.InvalidFilterValue,
            "non-empty",
        ),
        (
            {"filters": [Filter(column="external_id", value="not-a-uuid")]},
            errors.InvalidFilterValue,
            "not-a-uuid",
        ),
        ({"date_from": "2024-13-45"}, errors.InvalidDate, "2024-13-45"),
        ({"date_to": "yesterday"}, errors.InvalidDate, "yesterday"),
        ({"date_from": "2024-02-01", "date_to": "2024-01-01"}, errors.InvalidDateRange, "before"),
        ({"timezone": "Mars/Olympus"}, errors.InvalidTimezone, "Mars/Olympus"),
        ({"ids": list(range(6))}, errors.TooManyIds, "6 ids"),
        ({"ids": ["x"]}, errors.InvalidFilterValue, "'x'"),
        ({"format": "pdf"}, errors.UnsupportedFormat, "pdf"),
        ({"delimiter": '"'}, errors.InvalidOption, "delimiter"),
    ],
)
def test_bad_input_is_refused_with_code_and_named_value(registry, kw, error, named):
    with pytest.raises(error) as info:
        plan(registry, **kw)
    assert info.value.code == error.code
    assert named in info.value.message
    assert isinstance(info.value, errors.InvalidRequest)


def test_codes_are_stable_and_unique():
    codes = [
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ExportflowError)
    ]
    assert len(codes) == len(set(codes))
    assert errors.UnknownModule("x").to_dict() == {"code": "unknown_module", "message": "x"}


def test_sensitive_columns_never_in_default_columns(registry):
    names = [c.name for c in plan(registry).columns]
    assert "cost_price" not in names and "supplier_email" not in names
    assert names[0] == "id"


def test_date_range_is_whole_days_in_the_request_zone(registry):
    p = plan(registry, date_from="2024-01-01", date_to="2024-01-01", timezone="Europe/Berlin")
    bounds = {c.op: c.values[0] for c in p.conditions}
    assert bounds == {"gte": "2024-01-01T00:00:00+01:00", "lt": "2024-01-02T00:00:00+01:00"}


def test_date_range_on_module_without_date_column_is_refused(registry):
    registry.modules["tags"].date_column, saved = None, registry.modules["tags"].date_column
    try:
        with pytest.raises(errors.InvalidDateRange, match="no date column"):
            plan(registry, module="tags", date_from="2024-01-01")
    finally:
        registry.modules["tags"].date_column = saved
