"""Expected values straight from the table, via psycopg (independent of the export path)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa

from flows.control.jobs import Job
from flows.control.registry import Dataset
from flows.control.settings import Settings
from flows.datapath.engine import export
from flows.datapath.keyset import ChunkSizing
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import read_chunks
from flows.datapath.transform import FORMULA_TRIGGER

TRIGGERS = tuple("=+-@\t\r\n")
assert FORMULA_TRIGGER == r"^[=+\-@\t\r\n]"


def table_rows(db_url: str, ds: Dataset, columns: list[str], where: str = "") -> list[dict]:
    """Rows in key order; ±infinity timestamps come back as the strings PostgreSQL prints."""
    exprs = []
    for c in columns:
        if ds.types[c].base_type.startswith("timestamp") or ds.types[c].base_type == "date":
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
    plan_export(request, rt.registry, rt.settings)
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


@dataclass(frozen=True)
class ReadChunk:
    """A chunk as the keyset loop yielded it."""

    index: int
    lo: str | None
    hi: str
    table: pa.Table


def chunk_list(url: str, plan, rows: int, after: str | None = None, readers: int = 2):
    """Every chunk of `plan` with a fixed size of `rows` (no byte sizing)."""
    sizing = ChunkSizing(max_rows=rows, target_bytes=2**40, first_rows=rows)
    return [
        ReadChunk(b.index, b.lo, b.hi, t)
        for b, t in read_chunks(url, plan, sizing, after=after, readers=readers)
    ]


def limits(max_ids: int = 10_000, **bounds) -> Settings:
    """Settings with the request bounds given (and defaults for the rest)."""
    return Settings(_env_file=None, max_selected_ids=max_ids, **bounds)
