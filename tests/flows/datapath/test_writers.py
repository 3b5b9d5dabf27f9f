"""The writers' contract through the real data path: formula neutralising for every free-text
type (CSV apostrophe, XLSX quote-prefix style), CSV quoting for any reader's list separator,
the zone in both headers, and nothing left behind when an export fails part-way."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import tempfile
import threading
from pathlib import Path

import openpyxl
import polars as pl
import psycopg
import pytest
from python_calamine import CalamineWorkbook

from flows.control.registry import Column, load_checked_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.writers.csv import CsvWriter
from flows.datapath.writers.xlsx import XlsxWriter
from flows.datapath.writers.xlsx_text import MAX_CELL_CHARS, TRUNCATED_MARK, fix_text
from tests.flows.helpers import TRIGGERS, dataset_file, limits

TYPES_SQL = """
CREATE EXTENSION IF NOT EXISTS citext;
DROP TABLE IF EXISTS hostile, wide;
DROP DOMAIN IF EXISTS label; DROP TYPE IF EXISTS trigger_mood;
CREATE DOMAIN label AS varchar(40);
CREATE TYPE trigger_mood AS ENUM ('=e', '+e', '-e', '@e', E'\\te', E'\\re', E'\\ne');
CREATE TABLE hostile (id integer PRIMARY KEY, t text, v varchar(20), c char(8), ci citext,
    nm name, dom label, mood trigger_mood, arr text[], j json, jb jsonb, x xml,
    num numeric, n integer, f double precision, stamp timestamptz);
INSERT INTO hostile
SELECT i, tr || 'cmd', tr || 'v', tr || 'c', tr || 'ci', tr || 'nm', tr || 'dom',
       (enum_range(NULL::trigger_mood))[i], ARRAY[tr || 'a'], '-1'::json, '-2'::jsonb,
       XMLPARSE(CONTENT tr || '1+1'), -1.5 * i, -i, -0.25 * i, '2024-01-01 00:00+00'
FROM unnest(ARRAY['=', '+', '-', '@', E'\\t', E'\\r', E'\\n']) WITH ORDINALITY AS u(tr, i);
CREATE TABLE wide (id integer PRIMARY KEY, body text);
INSERT INTO wide SELECT g, (SELECT string_agg(md5(g::text || ':' || k), '')
    FROM generate_series(1, 32) AS k) FROM generate_series(1, 8000) AS g;
"""
FREE_TEXT = ["t", "v", "c", "ci", "nm", "dom", "mood", "arr", "j", "jb", "x"]
NUMBERS = ["num", "n", "f"]
YAML = """
modules:
  hostile: {table: public.hostile, key: id, permission: p, columns: {%(cols)s}}
  trusted: {table: public.hostile, key: id, permission: p, neutralise_formulas: false,
            columns: {%(cols)s}}
  wide: {table: public.wide, key: id, permission: p, columns: {id: null, body: null}}
"""


@pytest.fixture(scope="module")
def reg(db_url: str, tmp_path_factory: pytest.TempPathFactory):
    cols = ", ".join(f"{c}: null" for c in ["id", *FREE_TEXT, *NUMBERS, "stamp"])
    folder = tmp_path_factory.mktemp("writers")
    return load_checked_registry(
        dataset_file(db_url, folder, TYPES_SQL, YAML % {"cols": cols}), db_url
    )


def true_text(db_url: str) -> list[dict]:
    """Each free-text value as the export must show it, from PostgreSQL itself."""
    exprs = ", ".join(
        {"arr": "array_to_json(arr)::text", "c": "rpad(c, 8)"}.get(c, f"{c}::text") + f" AS {c}"
        for c in FREE_TEXT
    )
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT {exprs} FROM hostile ORDER BY id").fetchall()


def run(settings, reg, module: str, fmt: str, **kw) -> bytes:
    plan = plan_export(ExportRequest(module=module, format=fmt, **kw), reg, limits(10))
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    return buf.getvalue()


@pytest.mark.contrib  # the hostile table has a citext column
def test_every_free_text_type_is_neutralised_in_csv(settings, reg, db_url):
    rows = list(csv.DictReader(io.StringIO(run(settings, reg, "hostile", "csv").decode(), "")))
    truth = true_text(db_url)
    starts = set()
    for got, want in zip(rows, truth, strict=True):
        for c in FREE_TEXT:
            trigger = want[c].startswith(TRIGGERS)
            assert got[c] == ("'" + want[c] if trigger else want[c]), (c, got[c])
            starts.add((c, trigger))
        for c in NUMBERS:
            assert got[c].startswith("-") and float(got[c]) < 0, (c, got[c])  # never prefixed
    # Every type really starts a formula somewhere, except arrays (always "[").
    assert {c for c, trigger in starts if trigger} == set(FREE_TEXT) - {"arr"}
    trusted = run(settings, reg, "trusted", "csv").decode()
    assert "'" not in trusted and "=cmd" in trusted


@pytest.mark.contrib
def test_xlsx_keeps_the_true_text_and_marks_it_quote_prefix(settings, reg, db_url, tmp_path):
    path = tmp_path / "h.xlsx"
    path.write_bytes(run(settings, reg, "hostile", "xlsx"))
    sheet = openpyxl.load_workbook(path)["hostile"]
    header = [c.value for c in sheet[1]]
    names = [c for c in ["id", *FREE_TEXT, *NUMBERS, "stamp"]]
    calamine = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("hostile").to_python()
    for n, want in enumerate(true_text(db_url), start=2):
        for c in FREE_TEXT:
            cell = sheet.cell(n, names.index(c) + 1)
            assert cell.value == want[c] and cell.data_type == "s", (c, cell.value)
            assert cell.quotePrefix == want[c].startswith(TRIGGERS), (c, cell.value)
            assert calamine[n - 1][names.index(c)] == want[c]  # text, not a formula
        for c in NUMBERS:
            cell = sheet.cell(n, names.index(c) + 1)
            assert isinstance(cell.value, float | int) and not cell.quotePrefix
    assert header[-1] == "stamp (UTC)"
    path.write_bytes(run(settings, reg, "trusted", "xlsx"))
    sheet = openpyxl.load_workbook(path)["trusted"]
    assert sheet.cell(2, 2).value == "=cmd" and not sheet.cell(2, 2).quotePrefix


def csv_text(df: pl.DataFrame, delimiter: str = ",", header: bool = False) -> str:
    request = ExportRequest(module="m", delimiter=delimiter, header=header)
    writer = CsvWriter(request, [Column(name=n, label=n) for n in df.columns])
    return bytes(writer.preamble()).decode() + bytes(writer.encode(df)).decode()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_quotes_every_list_separator_whatever_the_delimiter(delimiter):
    values = ["a,b", "a;b", "a\tb", 'q"q', "cr\rlf\n", "", None, "plain", f"x{delimiter}y"]
    df = pl.DataFrame({"text": values, "n": list(range(len(values)))})
    d = delimiter
    assert csv_text(df, d).split("\r\n") == [
        *(f'"{v}"{d}{i}' for i, v in enumerate(values[:3])),
        f'"q""q"{d}3',
        f'"cr\rlf\n"{d}4',
        f'""{d}5',  # empty text: quoted, so that it is not NULL
        f"{d}6",  # NULL: nothing
        f'"plain"{d}7',  # the chunk needed list separators quoted: all its text is
        f'"x{d}y"{d}8',
        "",
    ]
    parsed = list(csv.reader(io.StringIO(csv_text(df, delimiter), newline=""), delimiter=d))
    assert [r[0] for r in parsed] == [v or "" for v in values]
    plain = pl.DataFrame({"text": ["plain", 'q"q', "", None], "n": [1, 2, 3, 4]})
    assert csv_text(plain, d).split("\r\n") == [
        f"plain{d}1",  # a chunk where RFC 4180 is enough is quoted just as much
        f'"q""q"{d}2',
        f'""{d}3',
        f"{d}4",
        "",
    ]


def test_csv_header_is_quoted_and_names_the_zone():
    columns = [
        Column(name="a", label="Name; full"),
        Column(name="b", label="Created at", pg_type="timestamp with time zone"),
    ]
    writer = CsvWriter(ExportRequest(module="m", timezone="Europe/Berlin"), columns)
    assert bytes(writer.preamble()) == b'"Name; full",Created at (Europe/Berlin)\r\n'


# -- failures leave nothing behind ---------------------------------------------------------


def exportflow_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("exportflow")}


def temp_files() -> set[str]:
    """Open files in the temporary folder, unlinked ones too (which psutil leaves out)."""
    tmp, found = tempfile.gettempdir(), set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(tmp):
                found.add(f"{fd.name}:{target}")
    return found


class FailingSink:
    """A sink whose storage fails after `limit` bytes, as a full disk would."""

    def __init__(self, limit: int) -> None:
        self.limit, self.written = limit, 0

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > self.limit:
            raise OSError(28, "No space left on device")
        return len(data)


@pytest.mark.contrib
@pytest.mark.parametrize(
    ("fmt", "sink", "fault", "error"),
    [
        ("xlsx", io.BytesIO(), "rename", "no longer exists"),  # a later chunk fails to read
        ("csv", io.BytesIO(), "rename", "no longer exists"),
        ("csv", FailingSink(2 << 20), None, "No space left"),  # the sink fails
        ("xlsx", io.BytesIO(), "cancel", "cancelled"),  # the caller stops it
    ],
)
def test_a_failed_export_leaves_no_thread_or_temp_file(settings, reg, fmt, sink, fault, error):
    threads, files = exportflow_threads(), temp_files()
    small = settings.model_copy(update={"chunk_bytes": 1 << 20, "chunk_rows": 40_000})
    plan = plan_export(ExportRequest(module="wide", format=fmt), reg, limits(10))
    seen = []

    def on_progress(done: int, total: int) -> None:
        seen.append(done)
        if fault == "cancel" and done >= 3000:
            raise RuntimeError("cancelled")
        if fault == "rename" and len(seen) == 1:
            # A real failure at a known point: the chunks after the first ones read a
            # column that is gone (42703, terminal).
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute("ALTER TABLE wide RENAME COLUMN body TO body_gone")

    try:
        with pytest.raises(Exception, match=error) as failure:
            export(settings.database_url, plan, sink, small, on_progress)
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                "DO $$ BEGIN ALTER TABLE wide RENAME COLUMN body_gone TO body;"
                " EXCEPTION WHEN undefined_column THEN NULL; END $$"
            )
    # The failure really came mid-way, with chunks written before it.
    assert seen and seen[-1] < 8000, seen
    assert failure.value is not None  # the traceback (and its frames) is still alive here
    assert exportflow_threads() <= threads
    assert temp_files() <= files


def test_xlsx_writer_releases_its_spool_and_thread_when_the_block_fails(tmp_path):
    columns = [Column(name="body", label="Body")]
    writer = XlsxWriter(ExportRequest(module="m", format="xlsx"), columns, block_rows=100)
    body = pl.DataFrame({"body": [os.urandom(4000).hex() for _ in range(800)]})
    files, threads = temp_files(), exportflow_threads()
    with pytest.raises(ValueError, match="expected 1 columns"), writer:
        writer.open(io.BytesIO())
        writer.write(body)  # spooled past memory into a temporary file
        assert temp_files() - files and exportflow_threads() - threads
        writer.write(body.with_columns(extra=pl.lit(1)))
    assert temp_files() <= files and exportflow_threads() <= threads


def test_a_huge_cell_is_cut_from_its_head_alone():
    """Only the head of a huge cell is cleaned and cut, with the same result as the whole."""
    for value in ["\x01" * 70_000 + "a" * 90_000, "🎉" * 100_000, "\x02b" * 80_000]:
        cleaned = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f]", "", value)
        units = cleaned.encode("utf-16-le")[: 2 * (MAX_CELL_CHARS - len(TRUNCATED_MARK))]
        assert fix_text(value) == units.decode("utf-16-le", "ignore") + TRUNCATED_MARK
