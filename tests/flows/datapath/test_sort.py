"""Sorted exports: PostgreSQL's order (NULLs last ascending, first descending), keyset-paged
through NULLs and duplicates, and only on an index."""

from __future__ import annotations

import psycopg
import pytest

from flows.control import errors
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import Query, Source, range_query
from tests.flows.datapath.filter_table import drop_items, exported_ids, make_items, sql_ids
from tests.flows.helpers import limits


@pytest.fixture(scope="module")
def items(db_url, tmp_path_factory):
    yield make_items(db_url, tmp_path_factory.mktemp("items"))
    drop_items(db_url)


def asc(column):
    return {"column": column, "direction": "asc"}


def desc(column):
    return {"column": column, "direction": "desc"}


@pytest.mark.parametrize("chunk_rows", [7, 400])
@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ([asc("price")], "price NULLS LAST, id"),
        ([{"column": "price"}], "price ASC NULLS LAST, id"),
        ([desc("price")], "price DESC NULLS FIRST, id DESC"),
        ([desc("grp"), asc("made")], "grp DESC NULLS FIRST, made ASC NULLS LAST, id"),
        ([asc("grp"), desc("made")], "grp NULLS LAST, made DESC NULLS FIRST, id DESC"),
        ([desc("id")], "id DESC"),
    ],
)
def test_a_sorted_export_is_sqls_order(settings, db_url, items, sort, order, chunk_rows):
    got = exported_ids(settings, items, chunk_rows, sort=sort)
    assert got == sql_ids(db_url, order=order)
    assert got != sql_ids(db_url)  # not the key's order by chance


def test_sort_and_filters_together(settings, db_url, items):
    filters = [
        {"any": [{"column": "price", "op": "lt", "value": 6}, {"column": "price", "op": "is_null"}]}
    ]
    got = exported_ids(settings, items, 3, sort=[desc("price")], filters=filters)
    want = sql_ids(db_url, "price < 6 OR price IS NULL", "price DESC NULLS FIRST, id DESC")
    assert got == want
    assert len(want) > 30


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ([asc("name")], 'CREATE INDEX ON public.fl_items ("name", "id")'),
        ([asc("made")], 'CREATE INDEX ON public.fl_items ("made", "id")'),
        # The index holds grp descending then made ascending, read either way: not this.
        ([desc("grp"), desc("made")], 'CREATE INDEX ON public.fl_items ("grp", "made", "id")'),
        (
            [asc("price"), desc("grp")],
            'CREATE INDEX ON public.fl_items ("price", "grp" DESC, "id" DESC)',
        ),
    ],
)
def test_a_sort_no_index_serves_is_refused_naming_the_index(items, sort, index):
    with pytest.raises(errors.SortNotIndexed) as info:
        plan_export(ExportRequest(module="items", sort=sort), items, limits())
    assert info.value.code == "sort_not_indexed"
    assert info.value.message.endswith(index)
    assert "needs an index" in info.value.message


@pytest.mark.parametrize(
    ("sort", "error", "says"),
    [
        ([asc("secret")], errors.SortNotAllowed, "cannot sort on column 'secret'"),
        ([asc("price"), desc("price")], errors.SortNotAllowed, "listed twice"),
        (
            [{"column": "price", "direction": "up"}],
            errors.InvalidOption,
            "'up' must be asc or desc",
        ),
        (
            [{"column": "price", "order": "asc"}],
            errors.InvalidRequest,
            "sort.0.order: unknown field",
        ),
    ],
)
def test_bad_sorts_are_refused(items, sort, error, says):
    with pytest.raises(error) as info:
        plan_export(ExportRequest(module="items", sort=sort), items, limits())
    assert says in info.value.message


def test_a_sorted_chunk_is_an_index_range(settings, db_url, items):
    """Between two bounds with prices, a chunk is read from the sort's index, no sort."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS"
            " $$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN ' || q; END $$"
        )
    plan = plan_export(ExportRequest(module="items", sort=[asc("price")]), items, limits())
    q = range_query(plan, '["3.00", "2"]', '["9.00", "6"]')
    explain = Query(f"SELECT plan_of($q${q.sql}$q$) AS line", q.params)
    with Source(settings.database_url, plan) as src:
        lines = src._fetch(explain, ordered=True).column(0).to_pylist()
    text = "\n".join(lines)
    assert "Index Cond" in text and "price" in text, text
    assert not any("Sort" in line for line in lines), text
