"""The filter operators and any/all groups: the rows exported are the rows SQL selects."""

from __future__ import annotations

import pytest

from flows.control import errors
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.datapath.filter_table import drop_items, exported_ids, make_items, sql_ids
from tests.flows.helpers import limits


@pytest.fixture(scope="module")
def items(db_url, tmp_path_factory):
    yield make_items(db_url, tmp_path_factory.mktemp("items"))
    drop_items(db_url)


def f(column, op, value=None):
    return {"column": column, "op": op} | ({} if value is None else {"value": value})


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        # neq and not_in keep the NULLs: "not 3" includes the rows with no price.
        ([f("price", "neq", "3")], "price IS DISTINCT FROM 3"),
        ([f("grp", "not_in", [1, 2])], "grp NOT IN (1, 2) OR grp IS NULL"),
        ([f("price", "gt", 30)], "price > 30"),
        ([f("price", "lt", "4.5")], "price < 4.5"),
        ([f("price", "between", [3, "9"])], "price BETWEEN 3 AND 9"),
        ([f("price", "is_null")], "price IS NULL"),
        ([f("name", "not_null")], "name IS NOT NULL"),
        # % and _ are literal; case does not matter, as for contains.
        ([f("name", "starts_with", "a_")], "starts_with(lower(name), 'a_')"),
        ([f("name", "starts_with", "100%")], "starts_with(name, '100%')"),
        ([f("name", "starts_with", "BA%")], "starts_with(lower(name), 'ba%')"),
        ([f("code", "lt", "010")], "code < '010'"),
        (
            [f("day", "between", ["2024-01-03", "2024-01-05"])],
            "day BETWEEN '2024-01-03' AND '2024-01-05'",
        ),
        # A date on a timestamp column is its whole day (in UTC here).
        ([f("made", "gt", "2024-01-05")], "made >= '2024-01-06 00:00+00'"),
        ([f("made", "lt", "2024-01-05")], "made < '2024-01-05 00:00+00'"),
        (
            [f("made", "neq", "2024-01-05")],
            "made < '2024-01-05 00:00+00' OR made >= '2024-01-06 00:00+00' OR made IS NULL",
        ),
        (
            [f("made", "between", ["2024-01-05", "2024-01-06T12:00:00Z"])],
            "made >= '2024-01-05 00:00+00' AND made <= '2024-01-06 12:00+00'",
        ),
        (
            [{"any": [f("price", "lt", 3), f("name", "starts_with", "b")]}, f("grp", "gte", 2)],
            "(price < 3 OR starts_with(lower(name), 'b')) AND grp >= 2",
        ),
        (
            [
                {
                    "any": [
                        {"all": [f("grp", "eq", 1), f("price", "is_null")]},
                        {"all": [f("grp", "is_null"), f("made", "eq", "2024-01-10")]},
                    ]
                }
            ],
            "(grp = 1 AND price IS NULL) OR (grp IS NULL"
            " AND made >= '2024-01-10 00:00+00' AND made < '2024-01-11 00:00+00')",
        ),
    ],
)
def test_the_exported_rows_are_the_rows_sql_selects(settings, db_url, items, filters, where):
    want = sql_ids(db_url, where)
    assert want, "the case selects no row: it would not tell a wrong filter from a right one"
    assert len(want) < 400
    assert exported_ids(settings, items, filters=filters) == want


@pytest.mark.parametrize(
    ("filters", "error", "says"),
    [
        ([f("price", "between", [1])], errors.InvalidFilterValue, "needs two values"),
        ([f("price", "between", "1")], errors.InvalidFilterValue, "needs two values"),
        ([f("price", "is_null", "x")], errors.InvalidFilterValue, "takes no value; remove it"),
        ([f("price", "gt")], errors.InvalidFilterValue, "'gt' on 'price' needs a value"),
        ([f("price", "not_in", [])], errors.InvalidFilterValue, "needs a non-empty list"),
        ([f("price", "gt", "cheap")], errors.InvalidFilterValue, "not a valid numeric(8,2)"),
        ([f("made", "not_in", ["2024-01-05"])], errors.InvalidFilterValue, "takes date-times"),
        ([f("secret", "is_null")], errors.FilterNotAllowed, "cannot filter on column 'secret'"),
        ([{"any": [f("secret", "eq", "s1")]}], errors.FilterNotAllowed, "'secret'"),
        ([{"any": []}], errors.InvalidRequest, "filters.0.any: List should have at least 1"),
        ([{"any": [f("id", "like", 1)]}], errors.UnknownOperator, "'like'"),
        ([{"any": [f("id", "eq", 1)], "all": []}], errors.InvalidRequest, "filters.0.all"),
        (
            [{"any": [{"all": [{"any": [{"all": [f("id", "eq", 1)]}]}]}]}],
            errors.InvalidRequest,
            "filter groups nest 4 deep, at most 3 allowed",
        ),
        (
            [f("id", "gt", 1), {"any": [f("id", "eq", n) for n in range(3)]}],
            errors.InvalidRequest,
            "4 filters given (groups included), at most 3 allowed",
        ),
        (
            [{"all": [f("grp", "not_in", list(range(6)))]}],
            errors.InvalidFilterValue,
            "6 values, at most 5 allowed",
        ),
    ],
)
def test_bad_filters_are_refused_saying_what_to_change(items, filters, error, says):
    with pytest.raises(error) as info:
        req = ExportRequest(module="items", filters=filters)
        plan_export(req, items, limits(max_filters=3, max_in_values=5))
    assert type(info.value) is error
    assert says in info.value.message


def test_three_levels_of_groups_are_allowed(settings, db_url, items):
    deep = [{"any": [{"all": [{"any": [f("grp", "eq", 3), f("grp", "is_null")]}]}]}]
    assert exported_ids(settings, items, filters=deep) == sql_ids(db_url, "grp = 3 OR grp IS NULL")
