"""Rows of a worksheet as XML, built column-wise with Polars string expressions.

Each column's cells are vectorised expressions, the pieces of a row are concatenated
per row, and the rows come out as one contiguous UTF-8 buffer. The XML for a block of
rows depends only on those rows and the number of the first one.

Cell rules (Excel's limits decide them):
- integers with more than 15 digits, and decimal text with more than 15 significant
  digits, are text: Excel keeps 15 digits and would change the rest;
- dates and timestamps are serial numbers styled as ISO dates; values before
  1900-03-01 stay ISO text (Excel counts a 29 Feb 1900 there, LibreOffice does not,
  so the same serial would be two different days), and so do those after 9999-12-31;
- text is an inline string (see xlsx_text for what is dropped, escaped or cut); free
  text that starts like a formula keeps its true value and gets the quote-prefix
  style, so that Excel keeps it text even when the cell is edited;
- NaN and ±Infinity are text (`NaN`, `Infinity`, `-Infinity`, as PostgreSQL writes
  them); booleans are booleans; NULL is no cell at all.
"""

from __future__ import annotations

import polars as pl

from flows.control.registry import Column
from flows.datapath.transform import wall_clock
from flows.datapath.writers import xlsx_text
from flows.datapath.writers.xlsx_parts import (
    STYLE_DATE,
    STYLE_DATETIME,
    STYLE_QUOTED,
    STYLE_TIME,
    column_letter,
)

MAX_EXACT_DIGITS = 15
_MAX_EXACT_INT = 10**MAX_EXACT_DIGITS - 1
_EPOCH_SERIAL = 25_569  # 1970-01-01 in Excel's 1900 date system
_FIRST_SERIAL = 61  # 1900-03-01: before it Excel counts a 29 Feb 1900 that never was
_LAST_SERIAL = 2_958_465  # 9999-12-31
_US_PER_DAY = 86_400_000_000
_NS_PER_DAY = 86_400_000_000_000
# Days since 1970 of 1900-03-01 and of 10000-01-01: the range written as serial numbers.
_SERIAL_DAYS = (_FIRST_SERIAL - _EPOCH_SERIAL, _LAST_SERIAL + 1 - _EPOCH_SERIAL)
NUMERIC_TYPES = {"numeric", "decimal"}
DATE_TYPES = {"date"}
TIMESTAMP_TYPES = {"timestamp with time zone", "timestamp without time zone"}
DATE_TEXT, TIMESTAMP_TEXT = "%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f"
_NOT_FREE_TEXT = NUMERIC_TYPES | DATE_TYPES | TIMESTAMP_TYPES | {"uuid"}
_SHORT_INTS = {pl.Int8, pl.Int16, pl.Int32, pl.UInt8, pl.UInt16, pl.UInt32}  # < 15 digits
_ROW = "\x00row"  # helper columns start with NUL, which no label holds
_TEXT_OPEN = '" t="inlineStr"><is><t xml:space="preserve">'
# The OWASP formula triggers (= + - @ TAB CR LF) as they look once escaped for XML.
_XML_TRIGGER = r"^(?:[=+\-@\t\n]|&#13;)"
_QUOTED = f' s="{STYLE_QUOTED}"'
_TEXT_CLOSE = "</t></is></c>"

Piece = pl.Expr | str


class RowEncoder:
    """Builds `<row>` elements for the worksheet columns `columns`, in that order."""

    def __init__(
        self,
        columns: list[Column],
        timezone: str,
        neutralise: bool = True,
        styles: list[int | None] | None = None,
    ) -> None:
        self.columns = columns
        self.styles = styles or [None] * len(columns)
        self.timezone = timezone
        self.neutralise = neutralise
        self.letters = [column_letter(i) for i in range(len(columns))]

    def encode(self, df: pl.DataFrame, first_row: int) -> memoryview:
        """The rows of `df` as XML, numbered from `first_row` (1-based), as UTF-8."""
        if df.width != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} columns, got {df.width}")
        if df.height == 0:
            return memoryview(b"")
        block = _Block(df, self.timezone, self.neutralise)
        block.extra[_ROW] = pl.int_range(first_row, first_row + df.height, dtype=pl.Int64).cast(
            pl.String
        )
        pieces: list[Piece] = ['<row r="', pl.col(_ROW), '">']
        for i, (name, column) in enumerate(zip(df.columns, self.columns, strict=True)):
            block.style = self.styles[i]
            pieces += block.column(i, name, column, self.letters[i])
        pieces.append("</row>")
        frame = df.with_columns(**block.extra)
        rows = frame.select(pl.concat_str(_merge_literals(pieces), ignore_nulls=True))
        return _utf8(rows.to_series())


class _Block:
    """One block's columns as row pieces. A column whose cells in this block are all of
    one kind and never NULL is spliced straight into the row; otherwise each cell is
    one expression, NULL where the value is NULL."""

    def __init__(self, df: pl.DataFrame, timezone: str, neutralise: bool) -> None:
        self.df = df
        self.timezone = timezone
        self.neutralise = neutralise
        self.extra: dict[str, pl.Series | pl.Expr] = {}
        self.style: int | None = None  # the column's number format, when it has its own

    @property
    def number(self) -> str:
        """The style attribute of a number cell."""
        return "" if self.style is None else f' s="{self.style}"'

    def date_style(self, date: bool) -> str:
        """The style attribute of a date or timestamp cell."""
        return f' s="{self.style or (STYLE_DATE if date else STYLE_DATETIME)}"'

    def column(self, index: int, name: str, column: Column, letter: str) -> list[Piece]:
        pg_type = column.base_type
        s = self.df[name]
        self.index, self.letter, self.nulls = index, letter, s.null_count()
        col = pl.col(name)
        dtype = s.dtype
        if dtype == pl.Boolean:
            return self.uniform("value", col.cast(pl.UInt8).cast(pl.String), ' t="b"')
        if dtype.is_integer():
            if dtype in _SHORT_INTS:
                return self.uniform("value", col.cast(pl.String), self.number)
            if dtype.is_unsigned_integer():
                exact = s <= _MAX_EXACT_INT
            else:
                exact = s.is_between(-_MAX_EXACT_INT, _MAX_EXACT_INT)
            return self.mixed(exact, col.cast(pl.String), self.number, col.cast(pl.String), col)
        if dtype.is_float():
            shown = col.cast(pl.String).str.replace("e", "E", literal=True)
            special = pl.when(col.is_nan()).then(pl.lit("NaN"))
            special = special.when(col > 0).then(pl.lit("Infinity"))
            special = special.when(col < 0).then(pl.lit("-Infinity"))  # NULL stays NULL
            return self.mixed(s.is_finite(), shown, self.number, special, col)
        if dtype == pl.Time:
            serial = col.cast(pl.Int64).cast(pl.Float64) / _NS_PER_DAY
            shown = serial.cast(pl.String).str.replace("e", "E", literal=True)
            return self.uniform("value", shown, f' s="{STYLE_TIME}"')
        if dtype.is_decimal():
            s = self.replace(name, s.cast(pl.String))
            return self.mixed(numeric_exact(s), col, self.number, col, col)
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            return self.temporal(name, s)
        if dtype == pl.String:
            if pg_type in NUMERIC_TYPES:
                return self.mixed(numeric_exact(s), col, self.number, col, col)
            if pg_type in DATE_TYPES | TIMESTAMP_TYPES:
                return self.temporal_text(name, s, pg_type in DATE_TYPES)
            if pg_type not in _NOT_FREE_TEXT:
                s = self.replace(name, xlsx_text.prepare(s))
            if self.neutralise and column.free_text:
                return self.quoted(s, col)
            return self.uniform("text", col)
        # Anything else (durations, lists, ...) as its text form.
        text = pl.col(name).cast(pl.String).str.replace_many(xlsx_text.ESCAPES)
        return self.uniform("text", text)

    def replace(self, name: str, s: pl.Series) -> pl.Series:
        self.extra[name] = s
        return s

    def cell(self, kind: str, v: pl.Expr, attrs: Piece = "") -> list[Piece]:
        head, tail = (_TEXT_OPEN, _TEXT_CLOSE) if kind == "text" else ('"><v>', "</v></c>")
        # Literal neighbours are merged before the rows are built (_merge_literals).
        return [f'<c r="{self.letter}', pl.col(_ROW), '"', attrs, head[1:], v, tail]

    def uniform(self, kind: str, v: pl.Expr, attrs: Piece = "") -> list[Piece]:
        parts = self.cell(kind, v, attrs)
        return parts if self.nulls == 0 else [pl.concat_str(_literals(parts))]

    def quoted(self, s: pl.Series, col: pl.Expr) -> list[Piece]:
        """Text cells; those that start like a formula get the quote-prefix style. The
        test runs on the escaped text, after what XML cannot hold has been dropped: that
        is the text a reader sees."""
        triggers = s.str.contains(_XML_TRIGGER)
        if not triggers.any():
            return self.uniform("text", col)
        if triggers.all():
            return self.uniform("text", col, _QUOTED)
        name = f"\x00quoted{self.index}"
        self.extra[name] = triggers
        return self.uniform(
            "text", col, pl.when(pl.col(name)).then(pl.lit(_QUOTED)).otherwise(pl.lit(""))
        )

    def mixed(
        self, ok: pl.Series | pl.Expr, v: pl.Expr, attrs: str, text: pl.Expr, source: pl.Expr
    ) -> list[Piece]:
        """A number (`v`) where `ok`, else text; `source` NULL means no cell."""
        if isinstance(ok, pl.Series):
            if ok.all():
                return self.uniform("value", v, attrs)
            if not ok.any():
                return self.uniform("text", text)
            name = f"\x00ok{self.index}"
            self.extra[name] = ok
            ok = pl.col(name)
        number = pl.concat_str(_literals(self.cell("value", v, attrs)))
        words = pl.concat_str(_literals(self.cell("text", text)))
        return [pl.when(ok).then(number).when(source.is_not_null()).then(words)]

    def temporal(self, name: str, s: pl.Series) -> list[Piece]:
        """Dates and timestamps as serial numbers, or as ISO text where Excel has no date."""
        date = s.dtype == pl.Date
        if not date and s.dtype.time_zone is not None:
            s = self.replace(name, wall_clock(s, self.timezone))
        col = pl.col(name)
        style = self.date_style(date)
        raw = _raw_serial(col, date)
        ticks = s.cast(pl.Int32) if date else s.dt.epoch("us")
        lo, hi = ticks.min(), ticks.max()
        per_day = 1 if date else _US_PER_DAY
        if lo is not None and _SERIAL_DAYS[0] <= lo / per_day and hi / per_day < _SERIAL_DAYS[1]:
            return self.uniform("value", raw.cast(pl.String), style)  # the common case
        text = col.dt.to_string(DATE_TEXT if date else TIMESTAMP_TEXT)
        return self.mixed(_in_range(raw), raw.cast(pl.String), style, text, col)

    def temporal_text(self, name: str, s: pl.Series, date: bool) -> list[Piece]:
        """A date or timestamp column that held ±infinity: its other values are dates."""
        parsed = (
            s.str.to_date(DATE_TEXT, strict=False)
            if date
            else s.str.to_datetime(TIMESTAMP_TEXT, time_unit="us", strict=False)
        )
        if parsed.null_count() == s.null_count():
            return self.temporal(name, self.replace(name, parsed))
        helper = f"\x00date{self.index}"
        self.extra[helper] = parsed
        raw = _raw_serial(pl.col(helper), date)
        style = self.date_style(date)
        return self.mixed(_in_range(raw), raw.cast(pl.String), style, pl.col(name), pl.col(name))


def _in_range(serial: pl.Expr) -> pl.Expr:
    return (serial >= _FIRST_SERIAL) & (serial < _LAST_SERIAL + 1)


def _raw_serial(col: pl.Expr, date: bool) -> pl.Expr:
    """Days since 1899-12-30: Excel's serial number from 1900-03-01 on."""
    if date:
        return col.cast(pl.Int32).cast(pl.Int64) + _EPOCH_SERIAL
    return col.dt.epoch("us").cast(pl.Float64) / _US_PER_DAY + _EPOCH_SERIAL


def numeric_exact(s: pl.Series) -> pl.Series:
    """Which decimal texts a double holds exactly, to 15 significant digits."""
    magnitude = s.cast(pl.Float64, strict=False).abs()
    if (s.str.len_bytes().max() or 0) <= MAX_EXACT_DIGITS:
        # At most 15 characters of digits, sign and point: at most 15 digits.
        return magnitude.is_finite()
    digits = pl.col("s").str.replace_all(r"[-.]", "").str.strip_chars("0").str.len_bytes()
    return (
        pl.DataFrame({"s": s, "m": magnitude})
        .select(
            pl.col("s").str.contains(r"^-?[0-9]+(?:\.[0-9]+)?$")
            & (digits <= MAX_EXACT_DIGITS)
            & (pl.col("m") < 1e307)
            & ((pl.col("m") > 1e-307) | (pl.col("m") == 0))
        )
        .to_series()
    )


def _literals(parts: list[Piece]) -> list[pl.Expr]:
    return [pl.lit(p) if isinstance(p, str) else p for p in parts]


def _merge_literals(parts: list[Piece]) -> list[pl.Expr]:
    """Adjacent literal pieces as one: fewer inputs to concatenate."""
    merged: list[Piece] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return _literals(merged)


def _utf8(s: pl.Series) -> memoryview:
    """The strings of `s`, back to back, as one UTF-8 buffer (no copy through Python)."""
    arr = s.to_arrow()
    if hasattr(arr, "combine_chunks"):
        arr = arr.combine_chunks()
    _, offsets, data = arr.buffers()
    bounds = memoryview(offsets).cast("q")  # a large_string array: 64-bit offsets
    return memoryview(data)[bounds[arr.offset] : bounds[arr.offset + len(arr)]]


def header_row(labels: list[str], style: int) -> str:
    """Row 1: the labels, as inline strings in the header style."""
    cells = "".join(
        f'<c r="{column_letter(i)}1" s="{style}" t="inlineStr"><is><t xml:space="preserve">'
        f"{xlsx_text.cell_text(label)}{_TEXT_CLOSE}"
        for i, label in enumerate(labels)
    )
    return f'<row r="1">{cells}</row>'


def sample_widths(df: pl.DataFrame, labels: list[str], sample: int = 1000) -> list[float]:
    """Column widths (in characters) from the labels and the first `sample` rows."""
    head = df.head(sample)
    fixed: dict[pl.DataType, int] = {pl.Boolean: 5, pl.Date: 10, pl.Time: 12}
    widths = []
    for name, label in zip(head.columns, labels, strict=True):
        dtype = head.schema[name]
        if dtype in fixed:
            longest = fixed[dtype]
        elif isinstance(dtype, pl.Datetime):
            longest = 23
        elif head.height:
            lines = head[name].cast(pl.String).str.split("\n")
            longest = lines.list.eval(pl.element().str.len_chars()).list.max().max() or 0
        else:
            longest = 0
        widths.append(float(min(max(longest, len(label) + 3) + 2, 60)))
    return widths
