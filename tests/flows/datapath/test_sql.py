"""The SQL a plan becomes, run on PostgreSQL: a count with no condition, domains read as
their base type, and free text longer than a spreadsheet cell cut for XLSX only."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pytest

from flows.control.registry import ColumnType, Dataset, Registry, load_checked_registry
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import Source
from flows.datapath.sql import XLSX_CUT_CHARS, count_query
from tests.flows.helpers import dataset_file, limits

SQL = """
DROP TABLE IF EXISTS sqlcut; DROP DOMAIN IF EXISTS sqlcut_qty;
CREATE DOMAIN sqlcut_qty AS integer CHECK (VALUE >= 0);
CREATE TABLE sqlcut (id integer PRIMARY KEY, qty sqlcut_qty, note text);
INSERT INTO sqlcut VALUES (1, 5, repeat('a', 40000)), (2, 7, 'short'), (3, 9, NULL);
"""
YAML = "modules:\n  cut: {table: sqlcut, key: id, permission: p, columns: {id: null, qty: null, note: null}}\n"


@pytest.fixture(scope="module")
def cut_registry(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path = dataset_file(db_url, tmp_path_factory.mktemp("sqlcut"), SQL, YAML)
    yield load_checked_registry(path, db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE sqlcut; DROP DOMAIN sqlcut_qty")


def read(db_url: str, registry: Registry, **request) -> pa.Table:
    plan = plan_export(ExportRequest(module="cut", **request), registry, limits())
    with Source(db_url, plan) as src:
        return src.read_range(None, "3")


def test_a_plan_without_conditions_counts_every_row(db_url, cut_registry):
    plan = plan_export(ExportRequest(module="cut"), cut_registry, limits())
    with Source(db_url, plan) as src:
        assert src.count() == 3


def test_free_text_longer_than_a_cell_is_cut_for_xlsx_only(db_url, cut_registry):
    xlsx = read(db_url, cut_registry, format="xlsx").column("note").to_pylist()
    assert [len(v) if v else v for v in xlsx] == [XLSX_CUT_CHARS + 1, 5, None]
    assert xlsx[1] == "short"
    csv = read(db_url, cut_registry).column("note").to_pylist()
    assert [len(v) if v else v for v in csv] == [40000, 5, None]


def test_a_domain_over_a_number_is_read_as_that_number(db_url, cut_registry):
    table = read(db_url, cut_registry, columns=["id", "qty"])
    assert table.column_names == ["id", "qty"]
    assert pa.types.is_integer(table.schema.field("qty").type)
    assert table.column("qty").to_pylist() == [5, 7, 9]


def test_a_table_not_resolved_by_the_catalog_is_quoted_part_by_part():
    ds = Dataset(name="orders", table="Shop.Order Lines", key="id", permission="p",
                 columns={"id": None}, types={"id": ColumnType(pg_type="integer")})  # fmt: skip
    plan = plan_export(ExportRequest(module="orders"), Registry(modules={"orders": ds}), limits())
    assert count_query(plan).sql == 'SELECT count(*) AS n FROM "Shop"."Order Lines"'
