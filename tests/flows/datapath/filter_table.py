"""A table with NULLs and duplicates in every filterable and sortable column."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
import psycopg

from flows.control.registry import Registry, load_checked_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.helpers import limits

ROWS = 400
TABLE_SQL = f"""
DROP TABLE IF EXISTS fl_items;
CREATE TABLE fl_items (
    id integer PRIMARY KEY, name text, price numeric(8, 2), grp integer,
    made timestamptz, day date, code char(4), secret text);
INSERT INTO fl_items
SELECT g,
       CASE WHEN g % 7 = 0 THEN NULL
            ELSE (ARRAY['Apple', 'a_b', 'axb', '100%', '10x', 'banana', 'Ba%'])[1 + (g / 7) % 7]
                 || ' ' || g END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE (g % 37) * 1.5 END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE g % 5 END,
       CASE WHEN g % 13 = 0 THEN NULL
            ELSE timestamptz '2024-01-01 00:00+00' + g * interval '3 hours' END,
       date '2024-01-01' + g % 20,
       lpad((g % 30)::text, 3, '0'),
       's' || g
FROM generate_series(1, {ROWS}) g;
CREATE INDEX ON fl_items (price, id);
CREATE INDEX ON fl_items (grp DESC, made);
ANALYZE fl_items;
"""
YAML = """modules:
  items:
    table: public.fl_items
    key: id
    permission: p
    columns: {id: null, name: null, price: null, grp: null, made: null, day: null, code: null}
    sensitive: [secret]
"""


def make_items(db_url: str, folder: Path) -> Registry:
    """Create the table and return its checked registry."""
    with psycopg.connect(db_url) as conn:
        conn.execute(TABLE_SQL)
    path = folder / "datasets.yaml"
    path.write_text(YAML)
    return load_checked_registry(path, db_url)


def drop_items(db_url: str) -> None:
    """Drop the table."""
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE IF EXISTS fl_items")


def exported_ids(settings, registry: Registry, chunk_rows: int = 7, **options) -> list[int]:
    """The ids of an export of `items` with `options`, in file order, read back from the CSV."""
    plan = plan_export(ExportRequest(module="items", **options), registry, limits())
    small = settings.model_copy(update={"chunk_rows": chunk_rows, "first_chunk_rows": chunk_rows})
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, small)
    return pl.read_csv(buf.getvalue())["id"].to_list()


def sql_ids(db_url: str, where: str = "TRUE", order: str = "id") -> list[int]:
    """The ids PostgreSQL itself selects, in the order given."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT id FROM fl_items WHERE {where} ORDER BY {order}").fetchall()
    return [r[0] for r in rows]
