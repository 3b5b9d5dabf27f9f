"""Expected values straight from the table, via psycopg (independent of the export path)."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from flows.datasets import Dataset
from flows.engine import export
from flows.jobs import Job
from flows.request import ExportRequest, plan_export
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


def new_job(rt, **options) -> Job:
    """A validated background job, as the API will create it."""
    request = ExportRequest(**{"module": "products", **options})
    plan_export(request, rt.registry, rt.settings.max_selected_ids)
    body = request.model_dump(by_alias=True)
    return rt.jobs.create("user-1", request.module, request.format, "background", body)


def reference(rt, job: Job) -> bytes:
    """The same request exported in this process by the engine, for comparison."""
    buf = io.BytesIO()
    export(rt.url, rt.plan(job), buf, rt.settings)
    return buf.getvalue()


def stored(rt, key: str) -> bytes:
    """The bytes of a file in the flows' storage."""
    with rt.storage.open_read(key) as f:
        return f.read()
