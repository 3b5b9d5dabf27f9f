"""Number formats from the dataset file and the request's date patterns in XLSX: the cells
keep real numbers and dates (they sum and sort) and carry the declared format."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import openpyxl
import psycopg
import pytest
from python_calamine import CalamineWorkbook

from flows.control.errors import DatasetConfigError
from flows.control.registry import load_checked_registry, load_registry
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export

FORMATS_SQL = """
DROP TABLE IF EXISTS xlsx_formats;
CREATE TABLE xlsx_formats (
    id integer PRIMARY KEY, price numeric(12, 2), share double precision, qty bigint,
    day date, seen timestamp, label text);
INSERT INTO xlsx_formats VALUES
 (1, 1234.5, 0.125, 1500000, '2024-02-01', '2024-02-01 13:14:15', 'b'),
 (2, -2.25, 0.5, 7, '1999-12-31', '2000-01-01 00:00:00', 'a'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 10, 1, 12, '2010-06-15', '2010-06-15 08:00:00', 'c');
"""
FORMATS_YAML = """
modules:
  priced:
    table: xlsx_formats
    key: id
    permission: p
    columns:
      id: ID
      price: {label: Price, format: "#,##0.00 [$€-407]"}
      share: {format: percent}
      qty: {label: Quantity, format: thousands}
      day: {label: Day, format: date}
      seen: Seen
      label: null
"""
EURO = "#,##0.00 [$€-407]"


@pytest.fixture(scope="module")
def priced(db_url, tmp_path_factory):
    with psycopg.connect(db_url) as conn:
        conn.execute(FORMATS_SQL)
    path = tmp_path_factory.mktemp("formats") / "datasets.yaml"
    path.write_text(FORMATS_YAML)
    yield load_checked_registry(path, db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE xlsx_formats")


def xlsx(settings, registry, **kw) -> bytes:
    plan = plan_export(ExportRequest(module="priced", format="xlsx", **kw), registry, settings)
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    return buf.getvalue()


def test_dataset_formats_reach_the_cells(settings, priced):
    ws = openpyxl.load_workbook(io.BytesIO(xlsx(settings, priced))).active
    assert [c.value for c in ws[1]] == ["ID", "Price", "share", "Quantity", "Day", "Seen", "label"]
    rows = list(ws.iter_rows(min_row=2))
    prices = [r[1] for r in rows if r[1].value is not None]
    assert {c.number_format for c in prices} == {EURO}
    assert [c.value for c in prices] == [1234.5, -2.25, 10]  # numbers: they sum and sort
    assert sum(c.value for c in prices) == 1242.25
    assert sorted(c.value for c in prices) == [-2.25, 10, 1234.5]
    assert {r[2].number_format for r in rows if r[2].value is not None} == {"0.00%"}
    assert rows[0][3].value == 1500000 and rows[0][3].number_format == "#,##0"
    assert rows[0][4].value == dt.datetime(2024, 2, 1)
    assert rows[0][4].number_format == "dd.mm.yyyy"
    # Without a format of its own (and no pattern in the request) a timestamp keeps ISO.
    assert rows[0][5].value == dt.datetime(2024, 2, 1, 13, 14, 15)
    assert rows[0][5].number_format == "yyyy\\-mm\\-dd\\ hh:mm:ss.000"
    assert rows[0][0].number_format == "General" and rows[0][6].data_type == "s"
    # Another reader sees the same numbers and dates.
    sheet = CalamineWorkbook.from_filelike(io.BytesIO(xlsx(settings, priced))).get_sheet_by_index(0)
    first = sheet.to_python()[1]
    assert first[1] == 1234.5 and first[4] == dt.date(2024, 2, 1)


def test_the_request_locale_chooses_date_formats_without_a_dataset_format(settings, priced):
    data = xlsx(settings, priced, locale="de-DE")
    ws = openpyxl.load_workbook(io.BytesIO(data)).active
    row = ws[2]
    assert row[5].value == dt.datetime(2024, 2, 1, 13, 14, 15)
    assert row[5].number_format == "dd.mm.yyyy\\ hh:mm:ss"
    assert row[4].number_format == "dd.mm.yyyy"  # the dataset's format wins
    assert row[1].value == 1234.5  # XLSX keeps numbers: no decimal comma in the value
    us = openpyxl.load_workbook(io.BytesIO(xlsx(settings, priced, locale="en-US"))).active
    assert us.cell(2, 6).number_format == "mm\\/dd\\/yyyy\\ hh:mm:ss"
    plain = openpyxl.load_workbook(io.BytesIO(xlsx(settings, priced, date_pattern="yyyy/MM/dd")))
    assert plain.active.cell(2, 5).number_format == "dd.mm.yyyy"


def test_the_styles_part_declares_each_format_once(settings, priced):
    styles = zipfile.ZipFile(io.BytesIO(xlsx(settings, priced))).read("xl/styles.xml").decode()
    assert styles.count('formatCode="#,##0.00 [$€-407]"') == 1
    assert '<cellXfs count="10">' in styles  # 6 built in + euro, percent, thousands, date


def test_a_format_on_a_text_column_is_refused(db_url, priced, tmp_path):
    path = tmp_path / "datasets.yaml"
    path.write_text(FORMATS_YAML.replace("label: null", "label: {format: decimal}"))
    with pytest.raises(DatasetConfigError, match=r"columns\.label\.format.*number, date"):
        load_checked_registry(path, db_url)
    path.write_text(FORMATS_YAML.replace("format: percent", "colour: red"))
    with pytest.raises(DatasetConfigError, match=r"column 'share', key 'colour': Extra inputs"):
        load_registry(path)
