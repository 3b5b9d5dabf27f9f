"""Hostile values survive the CSV path: written, read back by independent readers, compared."""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest

from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.writers import header_labels
from tests.flows.helpers import neutralised, table_rows, wall_clock


def run(settings, registry, **kw) -> tuple[bytes, object]:
    plan = plan_export(ExportRequest(**kw), registry, settings)
    buf = io.BytesIO()
    result = export(settings.database_url, plan, buf, settings)
    return buf.getvalue(), result


def parse(data: bytes, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter))


def expected_cell(value, pg_type: str, tz: str, text: str | None = None) -> str:
    if value is None:
        return text if text in ("infinity", "-infinity") else ""
    if isinstance(value, str) and pg_type in ("text", "character varying"):
        return neutralised(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return wall_clock(value, tz).isoformat(sep=" ")
    if isinstance(value, (date, Decimal, uuid.UUID, int)):
        return str(value)
    return value


@pytest.mark.parametrize(("module", "tz"), [("products", "UTC"), ("tags", "Asia/Kolkata")])
def test_every_cell_matches_the_table(settings, registry, db_url, module, tz):
    data, result = run(settings, registry, module=module, timezone=tz)
    ds = registry.modules[module]
    names = list(ds.columns)
    rows = parse(data)
    assert rows[0] == header_labels([ds.column(n) for n in names], tz)
    assert f"Created at ({tz})" in rows[0]  # zoned columns name the zone, as in XLSX
    expected = table_rows(db_url, ds, names)
    assert result.rows == len(expected) == len(rows) - 1
    for got, exp in zip(rows[1:], expected, strict=True):
        for cell, name in zip(got, names, strict=True):
            pg_type, value = ds.types[name].base_type, exp[name]
            if name == "attributes":
                assert json.loads(cell) == value
            elif pg_type == "double precision":
                assert (cell == "" and value is None) or float(cell) == value
            elif isinstance(value, datetime):
                assert datetime.fromisoformat(cell) == wall_clock(value, tz), (name, cell)
            else:
                want = expected_cell(value, pg_type, tz, exp.get(f"{name}__text"))
                assert cell == want, (name, exp[ds.key], cell, want)


def test_rfc4180_quoting_crlf_and_no_number_prefix(settings, registry):
    data, _ = run(
        settings, registry, module="products", columns=["id", "name", "price"], ids=[1, 2, 3, 10]
    )
    text = data.decode()
    assert text.startswith("ID,Name,Price\r\n")
    assert '"comma, inside #1"' in text and '"quote "" inside #2"' in text
    assert '"line\nbreak #3"' in text
    assert "'-2+3" not in text.split("\r\n")[1]  # numbers and ids never get an apostrophe
    assert text.endswith("\r\n")


def test_formula_triggers_neutralised_in_text_only(settings, registry, db_url):
    data, _ = run(settings, registry, module="tags", columns=["id", "description"])
    cells = [row[1] for row in parse(data)[1:]]
    dangerous = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))]
    assert dangerous == []
    assert "'=SUM(A1:A9)" in cells and "'\ttab first" in cells and "'-2+3" in cells


def test_neutralising_switch_off_for_trusted_module(settings, registry):
    ds = registry.modules["tags"]
    ds.neutralise_formulas = False
    try:
        data, _ = run(settings, registry, module="tags", columns=["description"])
    finally:
        ds.neutralise_formulas = True
    assert "=SUM(A1:A9)" in [r[0] for r in parse(data)[1:]]


def test_bom_gzip_delimiter_no_header(settings, registry, db_url):
    plain, _ = run(settings, registry, module="products", delimiter=";", bom=True)
    assert plain.startswith(b"\xef\xbb\xbf")
    packed, result = run(settings, registry, module="products", delimiter=";", bom=True, gzip=True)
    assert gzip.decompress(packed) == plain
    assert result.bytes == len(packed) < len(plain) / 2
    df = pl.read_csv(io.BytesIO(gzip.decompress(packed)[3:]), separator=";", infer_schema=False)
    assert df.height == 2000 and df["ID"][0] == "1"
    headless, _ = run(settings, registry, module="products", header=False, columns=["id"])
    assert headless.split(b"\r\n")[0] == b"1"


def test_output_is_deterministic(settings, registry):
    a, ra = run(settings, registry, module="products", gzip=True)
    b, rb = run(settings, registry, module="products", gzip=True)
    assert a == b and ra.sha256 == rb.sha256


def test_empty_result_has_header_only(settings, registry):
    data, result = run(
        settings,
        registry,
        module="products",
        filters=[{"column": "id", "op": "gte", "value": 10**9}],
    )
    assert (
        result.rows == 0
        and data
        == b"ID,SKU,Name,Description,Price,External ID,Attributes,In stock,Released on,"
        b"Created at (UTC),Barcode,Weight (kg)\r\n"
    )
