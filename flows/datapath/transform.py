"""Arrow chunk → Polars frame for a writer: zones, infinities, formula neutralising, labels."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa

from flows.datapath.locale import strftime
from flows.datapath.request import ExportPlan

# OWASP CSV injection: a cell starting with one of these is a formula to Excel or Sheets.
FORMULA_TRIGGER = r"^[=+\-@\t\r\n]"
# Columns a decimal separator applies to (numeric arrives as its exact text).
DECIMAL_TYPES = frozenset({"real", "double precision", "numeric"})
ISO_DATE, ISO_TIMESTAMP = "%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f"


def _sentinels(bits: int, epoch_shift: int) -> tuple[list[int], list[int]]:
    """Physical values of +infinity and -infinity. PostgreSQL stores them as the extremes
    counted from 2000-01-01; the driver shifts that to 1970 (wrapping the positive one).
    The unshifted extremes are kept too, in case the driver starts mapping them itself."""
    top, bottom = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    wrapped = (top + epoch_shift + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
    return [top, wrapped], [bottom, bottom + epoch_shift]


_TS_INF = _sentinels(64, 946_684_800_000_000)  # µs from 1970 to 2000
_DATE_INF = _sentinels(32, 10_957)  # days from 1970 to 2000


# Polars' zone data (chrono-tz) stops applying daylight saving time in the late 21st
# century, where PostgreSQL and zoneinfo go on applying the zone's rule; from 2037 on,
# when the 32-bit transition tables end, wall-clock times are worked out with zoneinfo.
_RULE_ONLY = (datetime(2037, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999))
_RULE_ONLY_US = [int((t - datetime(1970, 1, 1)).total_seconds()) * 10**6 for t in _RULE_ONLY]


def wall_clock(s: pl.Series, zone: str) -> pl.Series:
    """Zoned timestamps (microseconds) as naive wall-clock time in `zone`; the
    ±infinity sentinels keep their raw values."""
    s = s.dt.cast_time_unit("us")
    raw = s.cast(pl.Int64)
    sentinels = raw.is_in(_TS_INF[0] + _TS_INF[1]).arg_true()
    naive = pl.Datetime("us")
    # Zone conversion would overflow on the sentinels: they are converted as 0, then put back.
    safe = raw.clone().scatter(sentinels, 0) if len(sentinels) else raw
    shown = safe.cast(s.dtype).dt.convert_time_zone(zone).dt.replace_time_zone(None).cast(naive)
    if len(sentinels):
        shown = shown.scatter(sentinels, raw.gather(sentinels).cast(naive))
    late = raw.is_between(*_RULE_ONLY_US).arg_true()
    if len(late):
        tz = ZoneInfo(zone)
        fixed = [v.astimezone(tz).replace(tzinfo=None) for v in s.gather(late).to_list()]
        shown = shown.scatter(late, pl.Series(fixed, dtype=naive))
    return shown.alias(s.name)


def neutralise(s: pl.Series) -> pl.Series:
    """Prefix the text cells that would start a formula with an apostrophe."""
    # Only the hits are rebuilt: most chunks have none, and a copy of a text column
    # can be as large as the chunk itself.
    hits = s.str.contains(FORMULA_TRIGGER).arg_true()
    if len(hits) == 0:
        return s
    return s.scatter(hits, "'" + s.gather(hits))


class Transform:
    """Vectorised per-chunk transform; per-row Python only for timestamps after 2036."""

    def __init__(self, plan: ExportPlan) -> None:
        self.plan = plan
        self.names = [c.name for c in plan.columns]
        self.labels = {c.name: c.label for c in plan.columns}
        self.text_columns = [c.name for c in plan.columns if c.free_text]
        # XLSX keeps the true text and marks trigger cells with a quote-prefix style
        # (writers.xlsx_cells); only CSV needs the apostrophe in the value itself.
        self.neutralise = plan.dataset.neutralise_formulas and plan.request.format != "xlsx"
        # CSV shows the locale's text; XLSX keeps numbers and dates (its cells get formats).
        req, csv = plan.request, plan.request.format == "csv"
        self.comma = [
            c.name
            for c in plan.columns
            if csv and req.decimal_separator == "," and c.base_type in DECIMAL_TYPES
        ]
        self.booleans = (req.true_text, req.false_text) if csv else (None, None)
        self.date_format = strftime(req.date_pattern) if csv and req.date_pattern else None
        ts = req.timestamp_pattern
        self.timestamp_format = strftime(ts) if csv and ts else None

    def __call__(self, table: pa.Table) -> pl.DataFrame:
        """Transform one chunk; columns come out in plan order, named by label."""
        df = pl.from_arrow(table.select(self.names))
        # Spreadsheets have no zones: show wall-clock time in the request's zone.
        zoned = [
            wall_clock(df[n], self.plan.timezone)
            for n, dtype in df.schema.items()
            if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
        ]
        if zoned:
            df = df.with_columns(zoned)
        found = self._found(df)
        exprs: list[pl.Expr | pl.Series] = [
            self._temporal(name, dtype)
            for name, dtype in df.schema.items()
            if found.get(name) and isinstance(dtype, pl.Datetime | pl.Date)
        ]
        if self.neutralise:
            exprs += [neutralise(df[n]) for n in self.text_columns if found.get(n)]
        if exprs:
            df = df.with_columns(exprs)
        # After neutralising, which never touches a number: `-1,5` stays a number.
        shown = [
            e for e in (self._localised(df, n, t) for n, t in df.schema.items()) if e is not None
        ]
        if shown:
            df = df.with_columns(shown)
        return df.rename(self.labels)

    def _localised(self, df: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series | None:
        """The column as the locale writes it, or None when it stays as it is."""
        s = df[name]
        if name in self.comma:
            if dtype == pl.String:  # numeric: its exact text, one point at most
                return s.str.replace(".", ",", literal=True)
            if dtype.is_float():
                special = pl.when(pl.col(name) > 0).then(pl.lit("Infinity"))
                text = pl.col(name).cast(pl.String).str.replace(".", ",", literal=True)
                shown = pl.when(pl.col(name).is_infinite()).then(
                    special.otherwise(pl.lit("-Infinity"))
                )
                return df.select(shown.otherwise(text).alias(name)).to_series()
        if dtype == pl.Boolean and self.booleans[0] is not None:
            true, false = self.booleans
            return df.select(
                pl.when(pl.col(name))
                .then(pl.lit(true))
                .when(~pl.col(name))
                .then(pl.lit(false))
                .alias(name)
            ).to_series()
        fmt = self.date_format if dtype == pl.Date else None
        if isinstance(dtype, pl.Datetime):
            fmt = self.timestamp_format
        if fmt is None:
            return None
        text = s.dt.to_string(fmt)
        # Years before 1 print with a minus sign: the one way a date could start a formula.
        first_year = s.dt.year().min()
        if first_year is not None and first_year < 1:
            text = neutralise(text)
        return text.alias(name)

    def _found(self, df: pl.DataFrame) -> dict[str, bool]:
        """Per column, whether it holds what needs rewriting: ±infinity in a date or
        timestamp, a formula trigger in free text. One pass for all columns: most chunks
        hold neither, and a select per column costs more than the scans it runs."""
        text = set(self.text_columns) if self.neutralise else set()
        checks = []
        for name, dtype in df.schema.items():
            if isinstance(dtype, pl.Datetime | pl.Date):
                raw, (pos, neg) = _raw(name, dtype)
                checks.append(raw.is_in(pos + neg).any().alias(name))
            elif name in text and dtype == pl.String:
                checks.append(pl.col(name).str.contains(FORMULA_TRIGGER).any().alias(name))
        return df.select(checks).row(0, named=True) if checks else {}

    def _temporal(self, name: str, dtype: pl.DataType) -> pl.Expr:
        raw, (pos, neg) = _raw(name, dtype)
        # PostgreSQL's ±infinity arrive as the type's extreme values; keep their meaning as
        # text (zones are already applied, the sentinels left as they were).
        finite = pl.when(raw.is_in(pos + neg)).then(0).otherwise(raw).cast(dtype)
        fmt = self.date_format if dtype == pl.Date else self.timestamp_format
        text = finite.dt.to_string(fmt or (ISO_DATE if dtype == pl.Date else ISO_TIMESTAMP))
        return (
            pl.when(raw.is_in(pos))
            .then(pl.lit("infinity"))
            .when(raw.is_in(neg))
            .then(pl.lit("-infinity"))
            .otherwise(text)
            .alias(name)
        )


def _raw(name: str, dtype: pl.DataType) -> tuple[pl.Expr, tuple[list[int], list[int]]]:
    """A date or timestamp column's physical values, and its ±infinity sentinels."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(name).cast(pl.Int64), _TS_INF
    return pl.col(name).cast(pl.Int32), _DATE_INF
