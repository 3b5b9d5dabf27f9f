"""Request values typed by their column before any SQL runs: a value PostgreSQL would
refuse, or silently cut or round, is refused here naming the column, value and type."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from flows.control.errors import InvalidFilterValue, InvalidTimezone
from flows.control.registry import ColumnType

INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
# The largest finite value and the smallest non-zero one each float type holds.
FLOAT_RANGES = {"real": (3.4028234663852886e38, 1.401298464324817e-45), "double precision": None}
TEMPORAL = ("date", "timestamp with time zone", "timestamp without time zone")
# Spelled as PostgreSQL reads them; Python's int() and Decimal() also take `1_000`.
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE = {"nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf"}
_BOOLEANS = {
    **dict.fromkeys(("t", "true", "y", "yes", "on", "1"), "true"),
    **dict.fromkeys(("f", "false", "n", "no", "off", "0"), "false"),
}
_MODIFIER = re.compile(r"\((\d+)(?:,(-?\d+))?\)$")
_NOT_COMPARABLE = {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"}


class Refused(ValueError):
    """The value does not fit; the text says why, if more than "not a valid <type>"."""


def _modifier(ctype: ColumnType) -> tuple[int | None, int | None]:
    found = _MODIFIER.search(ctype.base_full)
    if not found:
        return None, None
    return int(found.group(1)), int(found.group(2)) if found.group(2) else None


def _numeric(text: str, ctype: ColumnType) -> str:
    precision, scale = _modifier(ctype)
    if text.lower() in _NON_FINITE:
        if text.lower() != "nan" and precision is not None:
            raise Refused("infinity does not fit a numeric with a precision")
        return text
    if not _NUMBER.fullmatch(text):
        raise Refused("")
    number = Decimal(text)
    if precision is not None:
        scale = scale or 0
        places = max(0, -number.normalize().as_tuple().exponent)
        if scale >= 0 and places > scale:
            # PostgreSQL would round it, and `lte 1.005` would then also match 1.01.
            raise Refused(f"it has more than {scale} decimal places")
        whole = len(str(int(abs(number)))) if abs(number) >= 1 else 0
        if whole > precision - scale:
            raise Refused(f"it has more than {precision - scale} digits before the point")
    return text


def _float(text: str, ctype: ColumnType) -> str:
    if text.lower() in _NON_FINITE:
        return text
    if not _NUMBER.fullmatch(text):
        raise Refused("")
    number, limits = float(text), FLOAT_RANGES[ctype.base_type]
    too_big = math.isinf(number) or (limits is not None and abs(number) > limits[0])
    exact = Decimal(text)
    # Exactly half the smallest value rounds to zero, which PostgreSQL refuses: compare
    # exactly, boundary included.
    too_small = exact != 0 and (
        number == 0 or (limits is not None and abs(exact) <= Decimal(limits[1]) / 2)
    )
    if too_big or too_small:
        raise Refused("it is out of range")
    return text


def _sized(text: str, ctype: ColumnType) -> str:
    # An explicit cast to char(n), varchar(n) or bit(n) silently cuts a longer value.
    size, _ = _modifier(ctype)
    if ctype.base_type in ("bit", "bit varying") and not re.fullmatch(r"[01]*", text):
        raise Refused("")
    if ctype.base_type == "bit" and size is not None and len(text) != size:
        raise Refused(f"it must be exactly {size} bits")
    measured = text.rstrip(" ") if ctype.base_type == "character" else text
    if size is not None and len(measured) > size:
        raise Refused(f"it is longer than {size} characters")
    return text


def scalar_text(ctype: ColumnType, value: Any) -> str:
    """The value as text PostgreSQL reads back as the same value of the column's type."""
    base = ctype.base_type
    text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
    if ctype.labels is not None:
        if str(value) not in ctype.labels:
            raise Refused(f"it is not one of: {', '.join(ctype.labels)}")
        return str(value)
    if base in INT_RANGES:
        lo, hi = INT_RANGES[base]
        if not _INT.fullmatch(text):
            raise Refused("")
        if not lo <= int(text) <= hi:
            raise Refused(f"it is outside {lo}..{hi}")
        return text
    if base == "numeric":
        return _numeric(text, ctype)
    if base in FLOAT_RANGES:
        return _float(text, ctype)
    if base == "boolean":
        if text.lower() not in _BOOLEANS:
            raise Refused("use true or false")
        return _BOOLEANS[text.lower()]
    if base == "uuid":
        return str(uuid.UUID(text))
    if base == "time without time zone":
        return time.fromisoformat(text).isoformat()
    if base in ("character", "character varying", "bit", "bit varying"):
        return _sized(str(value), ctype)
    return str(value)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone `name`, if both Python and Polars (which converts the timestamps) know it."""
    try:
        tz = ZoneInfo(name)
        # Polars reads zones its own way and refuses some Python accepts (posixrules,
        # localtime, Factory): ask it now rather than fail halfway through an export.
        one = pl.Series([datetime(2000, 1, 1)]).dt.replace_time_zone("UTC")
        one.dt.convert_time_zone(name).dt.replace_time_zone(None)
    except (ZoneInfoNotFoundError, ValueError, OSError, pl.exceptions.PolarsError):
        raise InvalidTimezone(
            f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return tz


def parse_moment(text: str, tz: ZoneInfo) -> date | datetime:
    """An ISO date, or a date-time (aware: a value without an offset is in `tz`)."""
    text = text.strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`."""
    return datetime.combine(day, time(), tz)


def moment_text(moment: datetime, base_type: str, tz: ZoneInfo, upper: bool = False) -> str:
    """An aware instant as a bound on a column: an instant for timestamptz, wall-clock
    time in `tz` for timestamp, the day holding it for a date (`upper`: an exclusive
    bound, so a day that began before it counts)."""
    local = moment.astimezone(tz)
    if base_type == "timestamp with time zone":
        # PostgreSQL refuses offsets past 15:59 that Python reads: those travel in UTC.
        far = abs(moment.utcoffset() or timedelta()) >= timedelta(hours=16)
        return (moment.astimezone(UTC) if far else moment).isoformat()
    if base_type == "timestamp without time zone":
        return local.replace(tzinfo=None).isoformat()
    day = local.date()
    if upper and local.time() != time():
        day += timedelta(days=1)
    return day.isoformat()


def temporal_terms(ctype: ColumnType, op: str, raw: Any, tz: ZoneInfo) -> list[tuple[str, str]]:
    """(op, text) terms for a filter on a date or timestamp column: a date on a
    timestamp column means its whole day in `tz`, so `eq` and `lte` become day ranges."""
    text = str(raw).strip()
    if text.lower() in ("infinity", "-infinity"):
        return [(op, text.lower())]
    found = parse_moment(text, tz)
    base = ctype.base_type
    if base == "date":
        if isinstance(found, datetime):
            raise Refused("give a date (YYYY-MM-DD)")
        return [(op, found.isoformat())]
    if isinstance(found, datetime):
        return [(op, moment_text(found, base, tz))]
    start = moment_text(day_start(found, tz), base, tz)
    end = moment_text(day_start(found + timedelta(days=1), tz), base, tz)
    # The day as a whole: after it (gt) starts at the next midnight, before it (lt) ends
    # at its own.
    ranges = {
        "eq": [("gte", start), ("lt", end)],
        "gte": [("gte", start)],
        "lte": [("lt", end)],
        "gt": [("gte", end)],
        "lt": [("lt", start)],
    }
    if op not in ranges:
        raise Refused("an `in` list on a timestamp takes date-times; use eq for a whole day")
    return ranges[op]


def check(column: str, ctype: ColumnType, value: Any, op: str, tz: ZoneInfo) -> list:
    """(op, text) terms for `column op value`; InvalidFilterValue naming column, value, type."""
    try:
        if isinstance(value, list | dict):
            raise Refused("give a single value")
        if ctype.base_type in _NOT_COMPARABLE:
            raise Refused(
                "this type can only be filtered with contains, starts_with, is_null or not_null"
            )
        if ctype.base_type in TEMPORAL:
            return temporal_terms(ctype, op, value, tz)
        return [(op, scalar_text(ctype, value))]
    except (Refused, ValueError, ArithmeticError) as exc:
        why = f": {exc}" if isinstance(exc, Refused) and str(exc) else ""
        raise InvalidFilterValue(
            f"value {value!r} for column {column!r} is not a valid {ctype.pg_type}{why}"
        ) from None
