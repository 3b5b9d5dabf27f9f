"""XLSX exports read back by independent readers (openpyxl, python-calamine, LibreOffice)
and compared cell by cell with the tables as PostgreSQL returns them; plus the package
structure Excel expects, and the writer's edge cases on hand-made frames."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import zipfile
import zlib
from decimal import Decimal
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree as ET

import openpyxl
import polars as pl
import psycopg
import pytest
from openpyxl.utils.escape import unescape
from python_calamine import CalamineWorkbook

from flows.control.registry import Column, Registry
from flows.control.settings import Settings
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.writers import file_extension, media_type
from flows.datapath.writers.xlsx import XlsxWriter
from flows.datapath.writers.xlsx_text import MAX_CELL_CHARS, TRUNCATED_MARK
from flows.datapath.writers.xlsx_zip import crc32_combine
from tests.flows.helpers import limits

NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "ct": "http://schemas.openxmlformats.org/package/2006/content-types",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}
R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
INTS = {"smallint", "integer", "bigint"}
FLOATS = {"real", "double precision"}
TEXT = {"text", "character varying", "character"}
ZONES = ["UTC", "Europe/Berlin"]


# -- helpers --------------------------------------------------------------------------


def run_export(
    registry: Registry, settings: Settings, path: Path, module: str, **request
) -> tuple[Path, list[Column]]:
    """Export `module` through the real data path into `path`."""
    plan = plan_export(
        ExportRequest(module=module, format="xlsx", **request), registry, limits(100)
    )
    with path.open("wb") as f:
        export(settings.database_url, plan, f, settings)
    return path, plan.columns


def db_rows(url: str, table: str, columns: list[Column], zone: str) -> list[tuple]:
    """The table as PostgreSQL returns it, in key order, with the expected cell values.

    Zone conversion and the text forms are PostgreSQL's own, not the exporter's."""
    exprs = []
    for c in columns:
        col = f'"{c.name}"'
        if c.base_type == "timestamp with time zone":
            exprs.append(
                f"CASE WHEN isfinite({col}) THEN to_char({col} AT TIME ZONE %(zone)s,"
                f" 'YYYY-MM-DD HH24:MI:SS.US') ELSE {col}::text END"
            )
        elif c.base_type == "date":
            exprs.append(
                f"CASE WHEN isfinite({col}) THEN to_char({col}, 'YYYY-MM-DD') ELSE {col}::text END"
            )
        elif c.base_type in INTS | FLOATS | TEXT | {"boolean"}:
            exprs.append(col)
        else:
            exprs.append(f"{col}::text")
    sql = f"SELECT {', '.join(exprs)} FROM {table} ORDER BY id"
    with psycopg.connect(url) as conn:
        rows = conn.execute(sql, {"zone": zone}).fetchall()
    return [tuple(expected(v, c.base_type) for v, c in zip(r, columns, strict=True)) for r in rows]


def significant_digits(text: str) -> int:
    return len(text.lstrip("-").replace(".", "").strip("0"))


def expected(value, pg_type: str):
    """What the cell must hold: the exporter's documented rules applied to PostgreSQL's value."""
    if value is None:
        return None
    if pg_type in INTS:
        return value if abs(value) < 10**15 else str(value)  # 16+ digits: text, exact
    if pg_type == "numeric":
        return float(value) if significant_digits(value) <= 15 else value
    if pg_type == "date":
        return value if "infinity" in value else dt.date.fromisoformat(value)
    if pg_type.startswith("timestamp"):
        if "infinity" in value:
            return value
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")
    return value  # formula triggers keep their text: the cell's style marks them


def to_ms(value: dt.datetime) -> dt.datetime:
    """Readers turn serial numbers back into times to about a microsecond."""
    micros = round(value.microsecond / 1000) * 1000
    return value.replace(microsecond=0) + dt.timedelta(microseconds=micros)


def openpyxl_sheets(path: Path) -> dict[str, list[tuple]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb}
    finally:
        wb.close()


def calamine_sheets(path: Path) -> dict[str, list[list]]:
    wb = CalamineWorkbook.from_path(str(path))
    return {n: wb.get_sheet_by_name(n).to_python(skip_empty_area=False) for n in wb.sheet_names}


def from_openpyxl(value, pg_type: str):
    if isinstance(value, str):
        return unescape(value)  # openpyxl leaves Excel's _xHHHH_ escapes in inline strings
    if isinstance(value, dt.datetime):
        return value.date() if pg_type == "date" else to_ms(value)
    return value


def from_calamine(value, pg_type: str):
    if value == "":
        return None  # calamine reads an empty cell and an empty string alike
    if isinstance(value, dt.datetime):
        return to_ms(value)
    if isinstance(value, float) and pg_type in INTS and value.is_integer():
        return int(value)
    return value


def check_cells(actual_rows, expected_rows, columns, convert, reader: str) -> None:
    assert len(actual_rows) == len(expected_rows), reader
    for n, (got_row, want_row) in enumerate(zip(actual_rows, expected_rows, strict=True)):
        got_row = list(got_row) + [None] * (len(columns) - len(got_row))
        for got, want, col in zip(got_row, want_row, columns, strict=True):
            got = convert(got, col.base_type)
            if reader == "calamine" and want == "":
                want = None
            where = f"{reader}: row {n + 2}, column {col.name} ({col.base_type})"
            assert got == want, f"{where}: {got!r} != {want!r}"
            assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"


def headers(columns: list[Column], zone: str) -> tuple[str, ...]:
    return tuple(
        f"{c.label} ({zone})" if c.base_type == "timestamp with time zone" else c.label
        for c in columns
    )


def write(df: pl.DataFrame, types: list[str], chunks: int = 1, **options) -> bytes:
    """Write a hand-made frame (columns named by label) with XlsxWriter, in `chunks` calls."""
    step = max(1, -(-df.height // chunks))
    return write_cut(df, types, list(range(step, df.height, step)), **options)


def write_cut(df: pl.DataFrame, types: list[str], cuts: list[int], **options) -> bytes:
    """Write the frame with XlsxWriter, given to it in pieces ending at `cuts`."""
    columns = [Column(name=n, label=n, pg_type=t) for n, t in zip(df.columns, types, strict=True)]
    request = options.pop("request", None) or ExportRequest(module="edge", format="xlsx")
    writer = XlsxWriter(request, columns, **options)
    buf = io.BytesIO()
    writer.open(buf)
    for lo, hi in zip([0, *cuts], [*cuts, df.height], strict=True):
        writer.write(df.slice(lo, hi - lo))
    writer.close()
    return buf.getvalue()


def saved(data: bytes, tmp_path: Path, name: str = "edge.xlsx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the demo data, every cell -------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("module", ["products", "tags"])
def test_every_cell_matches_the_database(db_url, registry, settings, tmp_path, module, zone):
    path, columns = run_export(registry, settings, tmp_path / "x.xlsx", module, timezone=zone)
    want = db_rows(db_url, module, columns, zone)
    for reader, sheets, convert in [
        ("openpyxl", openpyxl_sheets(path), from_openpyxl),
        ("calamine", calamine_sheets(path), from_calamine),
    ]:
        assert list(sheets) == [module], reader
        rows = sheets[module]
        assert tuple(rows[0]) == headers(columns, zone), reader
        check_cells(rows[1:], want, columns, convert, reader)


def test_the_rules_show_in_the_demo_data(db_url, registry, settings, tmp_path):
    """The cases the rules exist for really occur (so the cell comparison covers them)."""
    path, columns = run_export(registry, settings, tmp_path / "p.xlsx", "products")
    rows = openpyxl_sheets(path)["products"]
    names = [c.name for c in columns]
    sku, barcode, desc = names.index("sku"), names.index("barcode"), names.index("description")
    assert rows[1][sku] == "00000001"  # leading zeros kept: text stays text
    assert all(isinstance(r[barcode], str) and len(r[barcode]) >= 16 for r in rows[1:])
    assert any(isinstance(r[desc], str) and r[desc].startswith("=") for r in rows[1:])
    sheet = openpyxl.load_workbook(path)["products"]
    for (cell,) in sheet.iter_rows(min_row=2, min_col=desc + 1, max_col=desc + 1):
        trigger = isinstance(cell.value, str) and re.match(r"[=+\-@\t\r\n]", cell.value)
        assert cell.quotePrefix == bool(trigger), (cell.coordinate, cell.value)
        assert cell.data_type == "s" or cell.value is None
    assert any(r[desc] is None for r in rows[1:])
    assert {type(r[names.index("in_stock")]) for r in rows[1:]} == {bool, type(None)}
    tags = openpyxl_sheets(run_export(registry, settings, tmp_path / "t.xlsx", "tags")[0])
    assert tags["tags"][3][-1] == "infinity"  # tag id 3


def test_sheets_roll_over_with_the_header(db_url, registry, settings, tmp_path):
    small = settings.model_copy(update={"xlsx_sheet_rows": 700})
    path, columns = run_export(registry, small, tmp_path / "x.xlsx", "products")
    want = db_rows(db_url, "products", columns, "UTC")
    for reader, sheets, convert in [
        ("openpyxl", openpyxl_sheets(path), from_openpyxl),
        ("calamine", calamine_sheets(path), from_calamine),
    ]:
        assert list(sheets) == ["products", "products (2)", "products (3)"], reader
        assert [len(rows) - 1 for rows in sheets.values()] == [700, 700, 600], reader
        for rows in sheets.values():
            assert tuple(rows[0]) == headers(columns, "UTC"), reader
        data = [row for rows in sheets.values() for row in rows[1:]]
        check_cells(data, want, columns, convert, reader)


# -- LibreOffice -----------------------------------------------------------------------------


def soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        pytest.fail(
            "LibreOffice (soffice) is not installed: apt-get install libreoffice-calc-nogui"
        )
    return exe


def libreoffice_sheets(path: Path, out: Path) -> dict[str, list[list[str]]]:
    """Every sheet as the CSV LibreOffice writes (values as shown, UTF-8)."""
    # Filter options: comma, double quote, UTF-8, from line 1, ..., last token -1: every sheet.
    csv_filter = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"
    subprocess.run(
        [
            soffice(),
            "--headless",
            "--norestore",
            f"-env:UserInstallation={(out / 'profile').as_uri()}",
            "--convert-to",
            csv_filter,
            "--outdir",
            str(out),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    sheets = {}
    for name in openpyxl.load_workbook(path, read_only=True).sheetnames:
        with (out / f"{path.stem}-{name}.csv").open(encoding="utf-8", newline="") as f:
            sheets[name] = list(csv.reader(f))
    return sheets


def shown_by_libreoffice(value, pg_type: str, got: str) -> bool:
    """Whether LibreOffice's displayed text `got` is the expected cell `value`."""
    if value is None or value == "":
        return got == ""
    if isinstance(value, bool):
        return got == ("TRUE" if value else "FALSE")
    if isinstance(value, float | int) and not isinstance(value, bool):
        return abs(float(got) - value) <= 1e-12 * max(1.0, abs(value))
    if isinstance(value, dt.datetime):
        return got == value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, dt.date):
        return got == value.isoformat()
    # LibreOffice may turn a cell's CR LF into LF: line breaks compare as line breaks.
    return newlines(got) == newlines(value)


def newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.libreoffice
def test_libreoffice_reads_every_cell(db_url, registry, settings, tmp_path):
    exe = soffice()
    assert exe
    small = settings.model_copy(update={"xlsx_sheet_rows": 700})
    path, columns = run_export(
        registry, small, tmp_path / "lo.xlsx", "products", timezone="Europe/Berlin"
    )
    want = db_rows(db_url, "products", columns, "Europe/Berlin")
    sheets = libreoffice_sheets(path, tmp_path)
    assert [len(rows) - 1 for rows in sheets.values()] == [700, 700, 600]
    for rows in sheets.values():
        assert tuple(rows[0]) == headers(columns, "Europe/Berlin")
    data = [row for rows in sheets.values() for row in rows[1:]]
    assert len(data) == len(want)
    for n, (got_row, want_row) in enumerate(zip(data, want, strict=True)):
        for got, value, col in zip(got_row, want_row, columns, strict=True):
            assert shown_by_libreoffice(value, col.base_type, got), (
                f"row {n + 2}, {col.name}: {got!r} shown for {value!r}"
            )
    tags, _ = run_export(registry, settings, tmp_path / "tags.xlsx", "tags")
    rows = libreoffice_sheets(tags, tmp_path)["tags"]
    assert rows[3][-1] == "infinity"
    assert rows[1][-1] == "2024-01-01 00:01:01.123"


# -- package structure -----------------------------------------------------------------------


def test_package_structure(registry, settings, tmp_path):
    small = settings.model_copy(update={"xlsx_sheet_rows": 700})
    path, columns = run_export(registry, small, tmp_path / "x.xlsx", "products")
    zf = zipfile.ZipFile(path)
    assert zf.testzip() is None
    names = zf.namelist()
    assert len(names) == len(set(names))
    for info in zf.infolist():
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert not info.flag_bits & 0x08  # sizes in the local header, no data descriptor
    xml = {n: ET.fromstring(zf.read(n)) for n in names}  # every part is well-formed XML

    # Content types: the defaults, and an override for every part that is not a .rels.
    types = xml["[Content_Types].xml"]
    defaults = {d.get("Extension"): d.get("ContentType") for d in types.findall("ct:Default", NS)}
    assert defaults["rels"] == "application/vnd.openxmlformats-package.relationships+xml"
    overrides = {o.get("PartName"): o.get("ContentType") for o in types.findall("ct:Override", NS)}
    parts = {"/" + n for n in names if not n.endswith(".rels") and n != "[Content_Types].xml"}
    assert set(overrides) == parts
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    assert overrides["/xl/workbook.xml"] == f"{main}.sheet.main+xml"
    assert overrides["/xl/styles.xml"] == f"{main}.styles+xml"

    # Relationships: every target exists.
    def targets(rels_part: str) -> dict[str, tuple[str, str]]:
        base = PurePosixPath(rels_part).parent.parent
        out = {}
        for rel in xml[rels_part].findall("rel:Relationship", NS):
            target = str(PurePosixPath(os.path.normpath(base / rel.get("Target"))))
            assert target in names, f"{rels_part}: {target} missing"
            out[rel.get("Id")] = (rel.get("Type").rsplit("/", 1)[-1], target)
        return out

    package = targets("_rels/.rels")
    assert ("officeDocument", "xl/workbook.xml") in package.values()
    book_rels = targets("xl/_rels/workbook.xml.rels")
    assert ("styles", "xl/styles.xml") in book_rels.values()

    # Workbook: unique sheet names of at most 31 characters, a hidden filter name each.
    book = xml["xl/workbook.xml"]
    sheets = book.findall("m:sheets/m:sheet", NS)
    sheet_names = [s.get("name") for s in sheets]
    assert sheet_names == ["products", "products (2)", "products (3)"]
    assert len({n.lower() for n in sheet_names}) == len(sheet_names)
    assert all(len(n) <= 31 for n in sheet_names)
    assert len({s.get("sheetId") for s in sheets}) == len(sheets)
    last_col = "L"
    assert len(columns) == 12
    data_rows = [700, 700, 600]
    defined = {
        d.get("localSheetId"): d
        for d in book.findall("m:definedNames/m:definedName", NS)
        if d.get("name") == "_xlnm._FilterDatabase"
    }
    for i, (sheet, rows) in enumerate(zip(sheets, data_rows, strict=True)):
        kind, part = book_rels[sheet.get(R_ID)]
        assert kind == "worksheet"
        assert defined[str(i)].get("hidden") == "1"
        assert defined[str(i)].text == f"'{sheet_names[i]}'!$A$1:${last_col}${rows + 1}"
        check_sheet(xml[part], f"A1:{last_col}{rows + 1}", rows, len(columns))

    # Styles: the parts Excel requires, and every style index used exists.
    styles = xml["xl/styles.xml"]
    for tag, least in [("fonts", 1), ("fills", 2), ("borders", 1), ("cellStyleXfs", 1)]:
        node = styles.find(f"m:{tag}", NS)
        assert int(node.get("count")) == len(node) >= least, tag
    fills = [f.find("m:patternFill", NS).get("patternType") for f in styles.find("m:fills", NS)]
    assert fills[:2] == ["none", "gray125"]
    xfs = styles.find("m:cellXfs", NS)
    assert int(xfs.get("count")) == len(xfs)
    formats = {int(f.get("numFmtId")) for f in styles.findall("m:numFmts/m:numFmt", NS)}
    for xf in xfs:
        fmt = int(xf.get("numFmtId"))
        assert fmt < 164 or fmt in formats
        assert int(xf.get("fontId")) < len(styles.find("m:fonts", NS))
    used = {
        int(c.get("s"))
        for n in names
        if "worksheets" in n
        for c in xml[n].iter(f"{{{NS['m']}}}c")
        if c.get("s")
    }
    assert used and max(used) < len(xfs)
    assert styles.find("m:cellStyles/m:cellStyle", NS).get("builtinId") == "0"


def check_sheet(sheet: ET.Element, ref: str, data_rows: int, width: int) -> None:
    m = f"{{{NS['m']}}}"
    assert sheet.find("m:dimension", NS).get("ref") == ref
    assert sheet.find("m:autoFilter", NS).get("ref") == ref
    pane = sheet.find("m:sheetViews/m:sheetView/m:pane", NS)
    assert (pane.get("state"), pane.get("ySplit"), pane.get("topLeftCell")) == ("frozen", "1", "A2")
    assert len(sheet.findall("m:cols/m:col", NS)) == width
    # Schema order of the children Excel checks.
    order = [child.tag.removeprefix(m) for child in sheet]
    assert order[:6] == [
        "dimension",
        "sheetViews",
        "sheetFormatPr",
        "cols",
        "sheetData",
        "autoFilter",
    ]
    assert sheet.find(".//m:f", NS) is None  # no formulas
    assert sheet.find("m:hyperlinks", NS) is None
    rows = sheet.findall("m:sheetData/m:row", NS)
    assert [int(r.get("r")) for r in rows] == list(range(1, data_rows + 2))
    assert all(c.get("s") == "1" for c in rows[0])  # the bold header style
    for row in rows:
        refs = [c.get("r") for c in row]
        assert all(re.fullmatch(r"[A-Z]+" + row.get("r"), r) for r in refs)
        assert refs == sorted(refs, key=lambda r: (len(r), r))
        for c in row:
            kind = c.get("t")
            assert kind in (None, "b", "inlineStr")  # numbers, booleans, inline strings
            if kind == "inlineStr":
                t = c.find("m:is/m:t", NS)
                assert t is not None and t.get(XML_SPACE) == "preserve"
                assert c.find("m:v", NS) is None
            else:
                assert c.find("m:v", NS).text


def test_file_is_deterministic(registry, settings, tmp_path):
    first, _ = run_export(registry, settings, tmp_path / "a.xlsx", "products")
    second, _ = run_export(registry, settings, tmp_path / "b.xlsx", "products")
    assert first.read_bytes() == second.read_bytes()


def test_a_frame_written_whole_or_in_block_slices_gives_the_same_bytes():
    # A background export stores each key range in slices of the writer's blocks, the
    # CLI writes the range whole: the same rows give the same file, sheet breaks included.
    df = pl.DataFrame({"n": list(range(100, 195)), "t": [f"row {i:02d}" for i in range(95)]})
    options = {"block_rows": 7, "sheet_rows": 40}
    whole = write(df, ["integer", "text"], **options)
    assert write_cut(df, ["integer", "text"], list(range(7, 95, 7)), **options) == whole
    assert write_cut(df, ["integer", "text"], [14, 35, 42, 84], **options) == whole
    with zipfile.ZipFile(io.BytesIO(whole)) as z:
        assert z.read("xl/worksheets/sheet1.xml").count(b"<row ") == 41
        assert z.read("xl/worksheets/sheet3.xml").count(b"<row ") == 16


# -- edge cases on hand-made frames ------------------------------------------------------


def test_numbers_dates_and_specials(tmp_path):
    df = pl.DataFrame(
        {
            "int": [1, 10**15 - 1, 10**15, -(10**15), None, 2**63 - 1, 0],
            "float": [0.1, float("nan"), float("inf"), float("-inf"), None, 1e-7, 1e20],
            "numeric": [
                "12.50",
                "123456789012345.6",
                "-0.00",
                "NaN",
                None,
                "0.000001",
                "1" + "0" * 21,
            ],
            "date": [
                dt.date(1899, 12, 31),
                dt.date(1900, 2, 28),
                dt.date(1900, 3, 1),
                dt.date(2024, 2, 29),
                None,
                dt.date(9999, 12, 31),
                dt.date(1, 1, 1),
            ],
            "bool": [True, False, None, True, False, True, False],
        }
    )
    path = saved(write(df, ["bigint", "double precision", "numeric", "date", "boolean"]), tmp_path)
    want = [
        (1, 0.1, 12.5, "1899-12-31", True),
        (999999999999999, "NaN", "123456789012345.6", "1900-02-28", False),
        ("1000000000000000", "Infinity", 0.0, dt.date(1900, 3, 1), None),
        ("-1000000000000000", "-Infinity", "NaN", dt.date(2024, 2, 29), True),
        (None, None, None, None, False),
        ("9223372036854775807", 1e-7, 1e-6, dt.date(9999, 12, 31), True),
        (0, 1e20, 1e21, "0001-01-01", False),
    ]
    got = [tuple(from_openpyxl(v, t) for v, t in zip(r, ["x", "x", "x", "date", "x"], strict=True))
           for r in openpyxl_sheets(path)["edge"][1:]]  # fmt: skip
    assert got == want
    got = [tuple(from_calamine(v, "bigint") for v in r) for r in calamine_sheets(path)["edge"][1:]]
    assert got == want


def test_blocks_of_one_kind_keep_their_nulls(tmp_path):
    """A block whose values are all text-like (or all numbers) still leaves NULLs empty."""
    df = pl.DataFrame(
        {
            "float": [float("nan"), None, float("inf")],
            "unsigned": pl.Series([1, None, 10**16], dtype=pl.UInt64),
            "date": [dt.date(1800, 1, 1), None, dt.date(1850, 1, 1)],
        }
    )
    path = saved(write(df, ["double precision", "bigint", "date"], block_rows=2), tmp_path)
    assert openpyxl_sheets(path)["edge"][1:] == [
        ("NaN", 1, "1800-01-01"),
        (None, None, None),
        ("Infinity", "10000000000000000", "1850-01-01"),
    ]


def test_text_cells(tmp_path):
    emoji = "🎉" * 20_000  # 40,000 UTF-16 units
    df = pl.DataFrame(
        {
            "text": [
                "",
                "a_x0041_b",
                "_x0041__x0042_",
                "cr\rlf\r\nx",
                "  padded  ",
                "bad\x00\x01\x0bchars\ufffe",
                "&<>\"'",
                "x" * 40_000,
                emoji,
                None,
            ]
        }
    )
    path = saved(write(df, ["text"]), tmp_path)
    for reader, values in [
        ("openpyxl", [from_openpyxl(r[0], "text") for r in openpyxl_sheets(path)["edge"][1:]]),
        ("calamine", [r[0] for r in calamine_sheets(path)["edge"][1:]]),
    ]:
        values += [None] * (10 - len(values))  # a row of NULLs may read as no row
        assert values[1:7] == [
            "a_x0041_b",
            "_x0041__x0042_",
            "cr\rlf\r\nx",
            "  padded  ",
            "badchars",
            "&<>\"'",
        ], reader
        for long in values[7:9]:
            assert long.endswith(TRUNCATED_MARK), reader
            assert len(long.encode("utf-16-le")) // 2 <= MAX_CELL_CHARS, reader
        assert values[7].startswith("x" * 32_000)
        assert values[8].startswith("🎉" * 16_000)
        assert values[9] in (None, ""), reader
    assert openpyxl_sheets(path)["edge"][1][0] == ""  # an empty string is a cell, not NULL


def test_temporal_types_and_zones(tmp_path):
    zoned = pl.Series([dt.datetime(2024, 7, 1, 12, 0, 0, 123000)]).dt.replace_time_zone("UTC")
    df = pl.DataFrame(
        {
            "zoned": zoned,
            "naive": [dt.datetime(1800, 1, 1, 0, 0)],
            "time": [dt.time(13, 14, 15, 250000)],
            "real": pl.Series([0.1], dtype=pl.Float32),
            "dec": pl.Series([Decimal("12.34")], dtype=pl.Decimal(10, 2)),
            "inf": ["infinity"],
        }
    )
    types = [
        "timestamp with time zone",
        "timestamp without time zone",
        "time without time zone",
        "real",
        "numeric",
        "timestamp with time zone",
    ]
    request = ExportRequest(module="edge", format="xlsx", timezone="Europe/Berlin")
    path = saved(write(df, types, request=request), tmp_path)
    rows = openpyxl_sheets(path)["edge"]
    assert rows[0] == (
        "zoned (Europe/Berlin)",
        "naive",
        "time",
        "real",
        "dec",
        "inf (Europe/Berlin)",
    )
    zoned_cell, naive, time, real, dec, inf = rows[1]
    assert to_ms(zoned_cell) == dt.datetime(2024, 7, 1, 14, 0, 0, 123000)  # CEST wall clock
    assert naive == "1800-01-01 00:00:00"  # before 1900-03-01: text
    assert time == dt.time(13, 14, 15, 250000)
    assert real == 0.1 and dec == 12.34 and inf == "infinity"
    core = zipfile.ZipFile(path).read("docProps/core.xml").decode()
    assert "Europe/Berlin" in core


def test_empty_export_and_no_header(tmp_path):
    empty = pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})
    path = saved(write(empty, ["bigint"]), tmp_path)
    assert openpyxl_sheets(path) == {"edge": [("a",)]}
    sheet = ET.fromstring(zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml"))
    assert sheet.find("m:dimension", NS).get("ref") == "A1:A1"

    df = pl.DataFrame({"a": [1, 2, 3]})
    request = ExportRequest(module="edge", format="xlsx", header=False)
    path = saved(write(df, ["bigint"], request=request, sheet_rows=2), tmp_path, "nh.xlsx")
    assert openpyxl_sheets(path) == {"edge": [(1,), (2,)], "edge (2)": [(3,)]}
    book = zipfile.ZipFile(path).read("xl/workbook.xml").decode()
    assert "_FilterDatabase" not in book


def test_blocks_chunks_and_zip64_give_the_same_cells(tmp_path):
    df = pl.DataFrame({"n": list(range(1, 101)), "t": [f"t{i}" for i in range(100)]})
    plain = openpyxl_sheets(saved(write(df, ["integer", "text"]), tmp_path, "a.xlsx"))
    data = write(df, ["integer", "text"], chunks=7, block_rows=3, force_zip64=True, sheet_rows=40)
    path = saved(data, tmp_path, "b.xlsx")
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
    rolled = openpyxl_sheets(path)
    assert [len(r) for r in rolled.values()] == [41, 41, 21]
    assert [row for rows in rolled.values() for row in rows[1:]] == plain["edge"][1:]
    calamine = calamine_sheets(path)
    assert [row[1] for rows in calamine.values() for row in rows[1:]] == list(df["t"])


def test_options_and_limits():
    columns = [Column(name="a", label="a", pg_type="integer")]
    request = ExportRequest(module="m", format="xlsx")
    with pytest.raises(ValueError):
        XlsxWriter(request, columns, sheet_rows=0)
    with pytest.raises(ValueError):
        XlsxWriter(request, columns, sheet_rows=1_048_576)
    assert file_extension(request) == "xlsx" and media_type(request).endswith(".sheet")


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("history", ["history_", "history_ (2)"]),
        ("a/b:c" + "x" * 40, ["a_b_c" + "x" * 26, "a_b_c" + "x" * 22 + " (2)"]),
    ],
)
def test_sheet_names(tmp_path, module, expected):
    df = pl.DataFrame({"a": [1, 2]})
    request = ExportRequest(module=module, format="xlsx")
    path = saved(write(df, ["integer"], request=request, sheet_rows=1), tmp_path)
    assert list(openpyxl_sheets(path)) == expected


def test_crc32_combine():
    a, b = b"header " * 1000, b"body" * 12345
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


def deflate_backends() -> list:
    backends = [zlib]
    try:
        from isal import isal_zlib
    except ImportError:
        return backends
    return [*backends, isal_zlib]


@pytest.mark.parametrize("lib", deflate_backends(), ids=lambda lib: lib.__name__)
def test_deflate_segments_concatenate(monkeypatch, lib):
    from flows.datapath.writers import xlsx_zip

    monkeypatch.setattr(xlsx_zip, "_deflate_lib", lib)
    pieces = [b"<row>" * 5000, b"", b"plain text " * 777, b"tail"]
    segments = [xlsx_zip.deflate(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(b"".join(s.data for s in segments)) == b"".join(pieces)
    assert inflate.eof
    assert [s.crc for s in segments] == [zlib.crc32(p) for p in pieces]
    assert xlsx_zip.deflate(pieces[0]).data == xlsx_zip.deflate(pieces[0]).data
