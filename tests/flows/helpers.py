"""Expected values straight from the table, via psycopg (independent of the export path)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from flows.datasets import Dataset
from flows.transform import FORMULA_TRIGGER

TRIGGERS = tuple("=+-@\t\r\n")
assert FORMULA_TRIGGER == r"^[=+\-@\t\r\n]"


def table_rows(db_url: str, ds: Dataset, columns: list[str], where: str = "") -> list[dict]:
    """Rows in key order; ±infinity timestamps come back as the strings PostgreSQL prints."""
    exprs = []
    for c in columns:
        if ds.types[c].startswith("timestamp") or ds.types[c] == "date":
            exprs.append(f"CASE WHEN isfinite({c}) THEN {c} END AS {c}, {c}::text AS {c}__text")
        else:
            exprs.append(c)
    sql = f"SELECT {', '.join(exprs)} FROM {ds.table} {where} ORDER BY {ds.key}"
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql).fetchall()


def neutralised(value: str) -> str:
    """What a text cell must look like after formula neutralising."""
    return "'" + value if value.startswith(TRIGGERS) else value


def wall_clock(value: datetime, tz: str) -> datetime:
    """An aware timestamp as naive wall-clock time in `tz`."""
    return value.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
