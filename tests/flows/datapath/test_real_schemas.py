"""Schemas as real applications have them, exported end to end and compared with the table."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pytest

from flows.control.errors import DatasetConfigError
from flows.control.registry import load_checked_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.sql import XLSX_CUT_CHARS
from flows.datapath.transform import Transform
from flows.datapath.writers import make_writer
from tests.flows.helpers import chunk_list, limits, neutralised, wall_clock


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def export_csv(settings, plan, chunk_rows: int = 7) -> list[list[str]]:
    small = settings.model_copy(update={"chunk_rows": chunk_rows, "first_chunk_rows": chunk_rows})
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, small)
    return list(csv.reader(io.StringIO(buf.getvalue().decode(), newline="")))


def expected(db_url: str, sql: str, free_text: set[int]) -> list[list[str]]:
    """Rows as psycopg reads them, as the CSV must show them."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(sql).fetchall()
    return [
        [
            "" if v is None else (neutralised(str(v)) if i in free_text else str(v))
            for i, v in enumerate(row)
        ]
        for row in rows
    ]


def test_orders_export_every_row_as_stored(settings, db_url, shop):
    plan = plan_export(ExportRequest(module="orders"), shop, limits(10))
    rows = export_csv(settings, plan)
    header = ["Code", "name", "Total", "flags", "contact", "qty", "small", "ref", "status", "a.b"]
    assert rows[0] == header
    sql = (
        'SELECT "Code", name, "Order Total", flags, contact, qty, small, ref, status::text,'
        ' "a.b" FROM "Shop"."Orders" ORDER BY "Code"'
    )
    want = expected(db_url, sql, {0, 1, 4, 7, 8, 9})
    assert len(want) == 61 and rows[1:] == want
    # The char(8) key keeps its padding, and no row is lost at a chunk boundary.
    assert rows[1][0] == "A26     " and "ABCDEFGH" in [r[0] for r in rows]
    assert {r[8] for r in rows[1:]} == {"new", "'=1+2", '\'=HYPERLINK("http://x")', ""}


def test_domains_over_native_types_stay_numbers(settings, shop):
    plan = plan_export(ExportRequest(module="orders"), shop, limits(10))
    table = chunk_list(settings.database_url, plan, 100)[0].table
    assert table.schema.field("qty").type == pa.int32()
    assert table.schema.field("small").type == pa.int32()
    assert table.schema.field("contact").type in (pa.string(), pa.large_string())


@pytest.mark.parametrize(
    ("column", "op", "value", "where"),
    [
        ("Code", "eq", "B1", "\"Code\" = 'B1'"),
        ("Code", "in", ["ABCDEFGH", "C2"], "\"Code\" IN ('ABCDEFGH', 'C2')"),
        ("ref", "eq", "ABCDEFGH", "ref = 'ABCDEFGH'"),
        ("name", "eq", "name 7", "name = 'name 7'"),
        ("Order Total", "gte", "70.00", '"Order Total" >= 70'),
        ("status", "eq", "=1+2", "status = '=1+2'"),
        ("flags", "eq", "0101", "flags = B'0101'"),
        ("small", "lte", 2, "small <= 2"),
    ],
)
def test_filters_on_declared_types_match(settings, db_url, shop, column, op, value, where):
    req = ExportRequest(
        module="orders", columns=["Code"], filters=[{"column": column, "op": op, "value": value}]
    )
    plan = plan_export(req, shop, limits(10))
    got = [r[0] for r in export_csv(settings, plan)[1:]]
    want = [
        r[0]
        for r in expected(
            db_url, f'SELECT "Code" FROM "Shop"."Orders" WHERE {where} ORDER BY 1', set()
        )
    ]
    assert got == want and want


def test_ids_on_a_char_key(settings, shop):
    plan = plan_export(
        ExportRequest(module="orders", columns=["Code"], ids=["B1", "ABCDEFGH"]), shop, limits(10)
    )
    assert [r[0] for r in export_csv(settings, plan)[1:]] == ["ABCDEFGH", "B1      "]


@pytest.mark.parametrize("chunk_rows", [3, 7, 1000])
def test_mixed_case_unicode_text_key_exports_each_row_once(settings, db_url, shop, chunk_rows):
    plan = plan_export(ExportRequest(module="words"), shop, limits(10))
    rows = export_csv(settings, plan, chunk_rows)[1:]
    want = expected(db_url, 'SELECT word, n FROM "Shop"."Words" ORDER BY word', {0})
    assert rows == want and len(want) == 170


def test_a_uuid_key_pages_without_max(settings, db_url, shop):
    plan = plan_export(ExportRequest(module="sessions"), shop, limits(10))
    rows = export_csv(settings, plan)[1:]
    assert rows == expected(db_url, 'SELECT id, n FROM "Shop".sessions ORDER BY id', set())
    picked = [rows[3][0], rows[40][0].upper()]
    req = ExportRequest(module="sessions", ids=picked)
    assert export_csv(settings, plan_export(req, shop, limits(10)))[1:] == [rows[3], rows[40]]


@pytest.mark.parametrize(
    ("table", "key", "why"),
    [
        ('"Shop".loose', "code", "is nullable"),
        ('"Shop"."Lines"', "order_code", "no single-column unique index"),
    ],
)
def test_keys_that_cannot_page_are_refused_at_start(tmp_path, db_url, shop, table, key, why):
    text = f"modules:\n  bad:\n    table: '{table}'\n    key: {key}\n    permission: p\n    columns: {{v: null}}\n"
    path = write_yaml(tmp_path, text)
    with pytest.raises(DatasetConfigError) as info:
        load_checked_registry(path, db_url)
    msg = info.value.message
    assert str(path) in msg and "module 'bad'" in msg and "field 'key'" in msg
    assert why in msg and "or declare a different key" in msg


def test_a_very_wide_table(settings, db_url, tmp_path):
    cols = [f'"Col {i:03}" {"integer" if i % 2 else "text"}' for i in range(1, 300)]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            f"DROP TABLE IF EXISTS wide; CREATE TABLE wide (id integer PRIMARY KEY, {', '.join(cols)})"
        )
        values = ", ".join(f"g * {i}" if i % 2 else f"'=t' || g || '.{i}'" for i in range(1, 300))
        conn.execute(f"INSERT INTO wide SELECT g, {values} FROM generate_series(1, 40) g")
    names = ["id"] + [f"Col {i:03}" for i in range(1, 300)]
    body = ", ".join(f"'{n}': null" for n in names)
    reg = load_checked_registry(
        write_yaml(
            tmp_path,
            f"modules:\n  wide:\n    table: wide\n    key: id\n    permission: p\n    columns: {{{body}}}\n",
        ),
        db_url,
    )
    plan = plan_export(ExportRequest(module="wide"), reg, limits(10))
    rows = export_csv(settings, plan)
    assert rows[0] == names
    want = expected(
        db_url, "SELECT * FROM wide ORDER BY id", {i for i in range(1, 300) if i % 2 == 0}
    )
    assert rows[1:] == want and len(rows[1]) == 300


@pytest.mark.contrib
def test_citext_column_and_key(settings, db_url, tmp_path):
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "CREATE EXTENSION IF NOT EXISTS citext; DROP TABLE IF EXISTS handles;"
            " CREATE TABLE handles (handle citext PRIMARY KEY, n integer);"
            " INSERT INTO handles SELECT h, row_number() OVER () FROM unnest("
            "ARRAY['Bob', 'alice', 'Carol', 'dave', '=cmd', 'Émile']) h"
        )
    yaml_text = "modules:\n  handles: {table: handles, key: handle, permission: p, columns: {handle: null, n: null}}\n"
    reg = load_checked_registry(write_yaml(tmp_path, yaml_text), db_url)
    plan = plan_export(ExportRequest(module="handles"), reg, limits(10))
    assert reg.modules["handles"].types["handle"].free_text
    rows = export_csv(settings, plan, 2)[1:]
    assert rows == expected(db_url, "SELECT handle, n FROM handles ORDER BY handle", {0})
    req = ExportRequest(
        module="handles", filters=[{"column": "handle", "op": "eq", "value": "BOB"}]
    )
    assert export_csv(settings, plan_export(req, reg, limits(10)))[1:] == [["Bob", "1"]]


FLIGHTS_ROWS = 336_776


def test_nycflights13_exports_every_flight(settings, db_url, flights):
    registry, _ = flights
    plan = plan_export(ExportRequest(module="flights"), registry, limits(10))
    buf = io.BytesIO()
    started = time.monotonic()
    result = export(
        settings.database_url, plan, buf, settings.model_copy(update={"chunk_rows": 40_000})
    )
    assert time.monotonic() - started < 20
    assert result.rows == FLIGHTS_ROWS
    frame = pl.read_csv(buf.getvalue(), infer_schema=False).fill_null("")
    assert frame.height == FLIGHTS_ROWS and frame.columns[0] == "id"
    assert frame["id"].cast(pl.Int64).equals(pl.Series("id", range(1, FLIGHTS_ROWS + 1)))
    rows = [frame.columns, *map(list, frame.rows())]
    sample = [1, 2, 777, 8_255, 123_456, 250_000, FLIGHTS_ROWS]
    with psycopg.connect(db_url) as conn:
        found = conn.execute("SELECT * FROM flights WHERE id = ANY(%s) ORDER BY id", (sample,))
        for row in found.fetchall():
            shown = [
                "" if v is None else str(wall_clock(v, "UTC") if isinstance(v, datetime) else v)
                for v in row
            ]
            assert rows[row[0]] == shown
    # A flight that was cancelled: its NULLs are empty cells.
    assert rows[1][1:4] == ["2013", "1", "1"] and rows[1][-1] == "2013-01-01 10:00:00"
    assert sum(1 for r in rows[1:] if r[4] == "") == 8_255


def test_nycflights13_keyed_on_a_nullable_column_is_refused(db_url, flights):
    _, path = flights
    nullable = path.with_name("nullable.yaml")
    nullable.write_text(path.read_text().replace("key: id", "key: tailnum"))
    with pytest.raises(DatasetConfigError, match=r"field 'key'.*'tailnum' is nullable"):
        load_checked_registry(nullable, db_url)


NOTES_SQL = r"""
DROP TABLE IF EXISTS notes;
CREATE TABLE notes (id integer PRIMARY KEY, body text, tag varchar(10));
INSERT INTO notes VALUES
  (1, '=' || repeat(E'ab\x01', 40000), 'a'),
  (2, repeat('é', 40000), 'b'),
  (3, 'short', NULL),
  (4, E'\x01=' || repeat('y', 50000), 'd'),
  (5, repeat('🎉', 20000), 'e'),
  (6, repeat('z', 32768), 'f');
"""


def test_xlsx_reads_long_text_cut_and_writes_the_same_file(settings, db_url, tmp_path):
    with psycopg.connect(db_url) as conn:
        conn.execute(NOTES_SQL)
    path = tmp_path / "datasets.yaml"
    path.write_text(
        "modules:\n  notes: {table: notes, key: id, permission: p,"
        " columns: {id: null, body: null, tag: null}}\n"
    )
    reg = load_checked_registry(path, db_url)
    xlsx = plan_export(ExportRequest(module="notes", format="xlsx"), reg, limits(10))
    cut = chunk_list(settings.database_url, xlsx, 100)[0].table.column("body").to_pylist()
    assert max(len(v) for v in cut if v) == XLSX_CUT_CHARS + 1
    assert cut[2] == "short" and cut[3].startswith("\x01=y")
    # The writer fed the whole texts writes the very same bytes.
    whole = plan_export(ExportRequest(module="notes"), reg, limits(10))
    assert len(chunk_list(settings.database_url, whole, 100)[0].table["body"][0].as_py()) == 120001
    buf = io.BytesIO()
    export(settings.database_url, xlsx, buf, settings)
    reference = io.BytesIO()
    writer, transform = make_writer(xlsx.request, xlsx.columns, settings), Transform(xlsx)
    writer.open(reference)
    for chunk in chunk_list(settings.database_url, whole, 100):
        writer.write(transform(chunk.table))
    writer.close()
    assert buf.getvalue() == reference.getvalue()
