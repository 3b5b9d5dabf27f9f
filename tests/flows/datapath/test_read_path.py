"""How chunks are read: key order from the key's index, settings local to one read."""

from __future__ import annotations

import psycopg

from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import Query, Source, range_query
from tests.flows.helpers import limits

# COPY, which every read goes through, cannot wrap EXPLAIN; a function can.
PLAN_OF = """
CREATE OR REPLACE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS
$$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN ' || q; END $$
"""


def test_a_chunk_is_read_in_the_keys_index_order_and_the_setting_ends_with_it(
    settings, registry, db_url
):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PLAN_OF)
    plan = plan_export(ExportRequest(module="products"), registry, limits())
    q = range_query(plan, "10", "1500")
    explain = Query(f"SELECT plan_of($q${q.sql}$q$) AS line", q.params)
    with Source(settings.database_url, plan) as src:
        lines = src._fetch(explain, ordered=True).column(0).to_pylist()
        after = src._fetch(Query("SELECT current_setting('enable_sort') AS s", ()))
    assert "Index Scan using products_pkey" in lines[0], lines
    assert not any("Sort" in line for line in lines)
    assert after.column(0).to_pylist() == ["on"]
