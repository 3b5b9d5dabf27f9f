"""Property-based round trips: arbitrary rows, as the driver hands them over (Arrow), through
the transform and the CSV and XLSX writers, read back by independent readers and compared
with the documented rules (neutralising, XML-illegal characters dropped, the 32,767-character
cut, the 15-digit rule, wall-clock time in the request's zone, ±infinity as text)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import openpyxl
import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openpyxl.utils.escape import unescape
from python_calamine import CalamineWorkbook

from flows.control.registry import ColumnType, Dataset
from flows.datapath.request import ExportPlan, ExportRequest
from flows.datapath.transform import _DATE_INF, _TS_INF, Transform
from flows.datapath.writers import make_writer
from flows.datapath.writers.xlsx_text import MAX_CELL_CHARS, TRUNCATED_MARK

TRIGGERS = tuple("=+-@\t\r\n")
TYPES = {
    "t": "text",
    "n": "bigint",
    "f": "double precision",
    "num": "numeric",
    "d": "date",
    "ts": "timestamp with time zone",
}
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY_MIN, DAY_MAX = (
    (dt.date(1, 1, 1) - EPOCH.date()).days,
    (dt.date(9999, 12, 31) - EPOCH.date()).days,
)
US_MIN = (dt.datetime(1, 1, 2, tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)
US_MAX = (dt.datetime(9999, 12, 30, tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
PROFILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# -- values as the driver delivers them ----------------------------------------------------------

pieces = st.sampled_from(
    [
        *TRIGGERS,
        "\r\n",
        '"',
        "'",
        ",",
        ";",
        "|",
        "\x01",
        "\x0b",
        "\ufffe",
        "&",
        "<",
        "_x0041_",
        "🎉",
        "𝔘",
        "日本",
        "é",
        " ",
        "SUM(A1)",
        "1",
        "-2+3",
        "\u2028",
        "\x7f",
    ]
)
texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12),
    st.lists(pieces, max_size=6).map("".join),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["a", "🎉", "=b", "\x01x"]), st.integers(16_000, 34_000)
    ),
)
ints = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([10**15 - 1, 10**15, -(10**15) + 1, -(10**15), 0, 2**53 + 1]),
)
floats = st.floats(width=64)  # NaN, ±inf, -0.0, subnormals, the extremes
numerics = st.one_of(
    st.builds(
        lambda sign, digits, point: (
            sign + (digits[:point] or "0") + ("." + digits[point:] if digits[point:] else "")
        ),
        st.sampled_from(["", "-"]),
        st.text("0123456789", min_size=1, max_size=40),
        st.integers(0, 40),
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "0." + "0" * 300 + "1", "9" * 320]),
)
days = st.one_of(st.integers(DAY_MIN, DAY_MAX), st.sampled_from(_DATE_INF[0] + _DATE_INF[1]))
# Instants near DST changes (gaps and overlaps in wall-clock time), and anywhere at all.
transitions = [
    dt.datetime(2024, 3, 31, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 10, 27, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 3, 10, 7, tzinfo=dt.UTC),
    dt.datetime(2024, 11, 3, 6, tzinfo=dt.UTC),
    dt.datetime(2024, 4, 6, 15, tzinfo=dt.UTC),
    dt.datetime(2024, 9, 28, 14, tzinfo=dt.UTC),
    # Far in the future the zone's rule still applies (PostgreSQL and zoneinfo apply it).
    dt.datetime(2576, 3, 10, 7, tzinfo=dt.UTC),
    dt.datetime(2199, 10, 27, 1, tzinfo=dt.UTC),
]
near_dst = st.builds(
    lambda t, s: (t - EPOCH) // dt.timedelta(microseconds=1) + s,
    st.sampled_from(transitions),
    st.integers(-2 * 3600 * 10**6, 2 * 3600 * 10**6),
)
micros = st.one_of(st.integers(US_MIN, US_MAX), near_dst, st.sampled_from(_TS_INF[0] + _TS_INF[1]))
# 2576-03-10 03:00 EDT, just after the change to summer time; 2199-07-01, summer time.
FAR_DST = [(None,) * 5 + (19_129_503_600_000_000,), (None,) * 5 + (7_242_264_000_000_000,)]
rows = st.lists(
    st.tuples(*(st.none() | s for s in (texts, ints, floats, numerics, days, micros))),
    min_size=1,
    max_size=6,
)


def arrow(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "t": pa.array(cols[0], pa.string()),
            "n": pa.array(cols[1], pa.int64()),
            "f": pa.array(cols[2], pa.float64()),
            "num": pa.array(cols[3], pa.string()),
            "d": pa.array(cols[4], pa.int32()).cast(pa.date32()),
            "ts": pa.array(cols[5], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def plan(fmt: str, zone: str, neutralise: bool = True, delimiter: str = ",") -> ExportPlan:
    ds = Dataset(
        name="p",
        table="p",
        key="n",
        permission="p",
        neutralise_formulas=neutralise,
        columns={c: c for c in TYPES},
        types={c: ColumnType(pg_type=t) for c, t in TYPES.items()},
    )
    request = ExportRequest(module="p", format=fmt, timezone=zone, delimiter=delimiter)
    return ExportPlan(
        request=request, dataset=ds, columns=[ds.column(c) for c in TYPES], conditions=[]
    )


def encode(p: ExportPlan, table: pa.Table) -> bytes:
    buf = io.BytesIO()
    with make_writer(p.request, p.columns, neutralise=p.dataset.neutralise_formulas) as writer:
        writer.open(buf)
        writer.write(Transform(p)(table))
        writer.close()
    return buf.getvalue()


# -- what the documented rules say a cell holds --------------------------------------------------


def infinity(raw: int, sentinels: tuple[list[int], list[int]]) -> str | None:
    return "infinity" if raw in sentinels[0] else "-infinity" if raw in sentinels[1] else None


def wall(raw: int, zone: str) -> dt.datetime:
    return (EPOCH + dt.timedelta(microseconds=raw)).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def xlsx_text(value: str) -> str:
    value = XML_ILLEGAL.sub("", value)
    utf16 = value.encode("utf-16-le")
    if len(utf16) > 2 * MAX_CELL_CHARS:
        keep = utf16[: 2 * (MAX_CELL_CHARS - len(TRUNCATED_MARK))]
        value = keep.decode("utf-16-le", errors="ignore") + TRUNCATED_MARK
    return value


def iso_text(value: dt.datetime) -> str:
    """Polars' `%.f`: no fraction, or 3 or 6 digits, whichever shows it exactly."""
    us = value.microsecond
    fraction = "" if not us else f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}"
    return value.replace(microsecond=0).isoformat(sep=" ") + fraction


def numeric_is_number(text: str) -> bool:
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        return False
    magnitude = abs(float(text))
    digits = len(text.lstrip("-").replace(".", "").strip("0"))
    return digits <= 15 and (magnitude == 0 or 1e-307 < magnitude < 1e307)


# -- CSV ---------------------------------------------------------------------------------------


@PROFILE
@given(rows, st.sampled_from(ZONES), st.sampled_from([",", ";", "\t", "|"]), st.booleans())
@example(FAR_DST, "America/New_York", ",", True)
@example(FAR_DST, "Europe/Berlin", ",", True)
def test_csv_round_trip(rows, zone, delimiter, neutralise):
    data = encode(plan("csv", zone, neutralise, delimiter), arrow(rows))
    text = data.decode("utf-8")
    parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    assert parsed[0] == [*[*TYPES][:5], f"ts ({zone})"]
    assert len(parsed) == len(rows) + 1
    frame = pl.read_csv(data, separator=delimiter, infer_schema=False)
    for row, got, t_cell in zip(rows, parsed[1:], frame["t"], strict=True):
        t, n, f, num, d, ts = row
        if t is None:
            assert t_cell is None
        else:
            shown = "'" + t if neutralise and t.startswith(TRIGGERS) else t
            assert got[0] == t_cell == shown
            # Excel splits on the list separator of the reader's locale: quoted whatever it is.
            assert (
                not any(c in t for c in ",;\t")
                or f'"{shown.replace(chr(34), 2 * chr(34))}"' in text
            )
        assert got[1] == ("" if n is None else str(n))
        if f is None:
            assert got[2] == ""
        elif f != f:
            assert got[2] == "NaN"
        else:
            assert float(got[2]) == f and not got[2].startswith("'")
        assert got[3] == (num or "")
        if d is not None:
            assert got[4] == infinity(d, _DATE_INF) or dt.date.fromisoformat(got[4]) == (
                EPOCH.date() + dt.timedelta(days=d)
            )
        if ts is not None:
            assert got[5] == infinity(ts, _TS_INF) or dt.datetime.fromisoformat(got[5]) == wall(
                ts, zone
            )


# -- XLSX --------------------------------------------------------------------------------------


def expected_xlsx(row: tuple, zone: str) -> list:
    t, n, f, num, d, ts = row
    cells = [None if t is None else xlsx_text(t)]
    cells.append(None if n is None else n if abs(n) < 10**15 else str(n))
    if f is None or (f == f and abs(f) != float("inf")):
        cells.append(f)
    else:
        cells.append("NaN" if f != f else "Infinity" if f > 0 else "-Infinity")
    cells.append(None if num is None else float(num) if numeric_is_number(num) else num)
    if d is None:
        cells.append(None)
    else:
        day = infinity(d, _DATE_INF) or EPOCH.date() + dt.timedelta(days=d)
        in_range = isinstance(day, dt.date) and dt.date(1900, 3, 1) <= day
        cells.append(day if in_range or isinstance(day, str) else day.isoformat())
    if ts is None:
        cells.append(None)
    elif infinity(ts, _TS_INF):
        cells.append(infinity(ts, _TS_INF))
    else:
        shown = wall(ts, zone)
        cells.append(shown if shown >= dt.datetime(1900, 3, 1) else iso_text(shown))
    return cells


def same(got, want) -> bool:
    if isinstance(want, dt.datetime):
        if type(got) is dt.date:  # calamine reads a timestamp at midnight as a date
            got = dt.datetime.combine(got, dt.time())
        return isinstance(got, dt.datetime) and abs(got - want) <= dt.timedelta(milliseconds=1)
    if isinstance(want, dt.date):
        return got == want or got == dt.datetime.combine(want, dt.time())
    if isinstance(want, float) and isinstance(got, int | float):
        return got == want
    if want == "" or want is None:
        return got in ("", None)
    return got == want


@PROFILE
@given(rows, st.sampled_from(ZONES), st.booleans())
@example(FAR_DST, "America/New_York", True)
@example(FAR_DST, "Europe/Berlin", True)
def test_xlsx_round_trip(rows, zone, neutralise):
    data = encode(plan("xlsx", zone, neutralise), arrow(rows))
    sheet = openpyxl.load_workbook(io.BytesIO(data))["p"]
    calamine = CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0)
    calamine_rows = calamine.to_python(skip_empty_area=False)
    assert [c.value for c in sheet[1]] == [*[*TYPES][:5], f"ts ({zone})"]
    for r, row in enumerate(rows, start=2):
        want = expected_xlsx(row, zone)
        got_cal = list(calamine_rows[r - 1]) + [""] * 6 if r - 1 < len(calamine_rows) else [""] * 6
        for c, expected in enumerate(want):
            cell = sheet.cell(r, c + 1)
            got = unescape(cell.value) if isinstance(cell.value, str) else cell.value
            where = (r, [*TYPES][c], row[c])
            assert same(got, expected), (*where, got, expected)
            assert same(got_cal[c], expected), (*where, got_cal[c], expected)
            trigger = c == 0 and isinstance(expected, str) and expected.startswith(TRIGGERS)
            assert cell.quotePrefix == (neutralise and trigger), where
