"""Expected values straight from the table, via psycopg (independent of the export path)."""

from __future__ import annotations

import io
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.client.schemas.objects import TaskRun

from flows.control.jobs import Job
from flows.control.registry import Dataset
from flows.control.settings import Settings
from flows.datapath.engine import export
from flows.datapath.keyset import ChunkSizing
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.source import read_chunks
from flows.datapath.transform import FORMULA_TRIGGER
from flows.orchestration.export_flow import export_flow
from flows.orchestration.submit import EXPORT_DEPLOYMENT

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


def new_job(rt, user: str = "user-1", **options) -> Job:
    """A validated background job, as the API will create it."""
    request = ExportRequest(**{"module": "products", **options})
    plan_export(request, rt.registry, rt.settings)
    body = request.model_dump(by_alias=True)
    return rt.jobs.create(user, request.module, request.format, "background", body)


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


RUN_TIMEOUT = 90
# Ten chunks of the seed: long enough to catch a run between chunks, short enough for the
# suite (each chunk task costs about half a second here, most of it connecting).
CHUNK_ROWS = 200
CHUNKS = 2000 // CHUNK_ROWS


def wait_for(predicate, what: str, timeout: float = 30.0, every: float = 0.02):
    """The first truthy value of `predicate()`; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def started(rt, job) -> Job:
    """The job once its run has recorded a first chunk (chunks are sized and read ahead)."""
    return wait_for(lambda: (j := rt.jobs.get(job.id)).processed_rows > 0 and j, "a first chunk")


def in_background(fn, *args, **kwargs) -> Future:
    """`fn(*args, **kwargs)` on a thread of its own, so the test can act while it runs."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="background-run")
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def task_runs(flow_run_id) -> list[TaskRun]:
    """Every task run of one flow run, from the Prefect API."""
    only = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return client.read_task_runs(task_run_filter=only, limit=200)


def chunk_runs(flow_run_id) -> dict[int, TaskRun]:
    """The flow run's chunk task runs by chunk index."""
    runs = [t for t in task_runs(flow_run_id) if t.name.startswith("chunk-")]
    return {int(t.name.split("-")[1]): t for t in runs}


# What an export statement is, told from its SQL: the bound probe reads max(k) of a
# LIMITed page, the count reads count(*), a chunk read has ORDER BY and no LIMIT.
READ, PROBE, COUNT = "read", "probe", "count"


def statement_kind(sql: str) -> str | None:
    """READ, PROBE, COUNT or None (not an export statement)."""
    text = sql.lower()
    if "with page as" in text:  # the next chunk's bound, as flows/datapath/sql.py writes it
        return PROBE
    if "count(*)" in text:
        return COUNT
    if "order by" in text and "limit" not in text:
        return READ
    return None


def all_chunks_waiting(kinds: list[str]) -> bool:
    """Whether every live chunk task of a run reading two chunks ahead waits on the lock.

    The flow holds at most two chunk futures, and probes the next bound only while it
    holds fewer: two waiting reads, or one waiting read beside a waiting probe, means no
    chunk task is between its read and its write."""
    return kinds.count(READ) >= 2 or (READ in kinds and PROBE in kinds)


class TableLock:
    """ACCESS EXCLUSIVE on a table in a transaction of its own: every read of it waits."""

    def __init__(self, url: str, table: str = "products") -> None:
        self.url = url
        self.conn = psycopg.connect(url)
        self.conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def waiting(self) -> list[tuple[int, str]]:
        """(pid, kind) of the export statements waiting for a lock in this database."""
        # A fresh connection each time: pg_stat_activity is a snapshot per transaction.
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> %s",
                (self.conn.info.backend_pid,),
            ).fetchall()
        return [(pid, kind) for pid, sql in rows if (kind := statement_kind(sql))]

    def terminate(self, pid: int) -> None:
        """End one waiting backend, and wait until it has gone."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()[0]

    def release(self) -> None:
        """Roll back: the lock goes and nothing changed."""
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

    def commit(self) -> None:
        """Commit what was done under the lock, which releases it."""
        self.conn.commit()
        self.conn.close()


def lock_when(url: str, ready, attempts: int = 100, settle: float = 0.3) -> TableLock:
    """Lock `products` at a moment when `ready(kinds of waiting statements)` holds.

    A lock taken while the flow itself probes the next bound catches no chunk read; it is
    released and taken again a little later, so a fault lands on a chunk task. A chunk read
    takes milliseconds: the pauses between tries vary, so that one lands before a read."""
    for attempt in range(attempts):
        lock = TableLock(url)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if ready([kind for _, kind in lock.waiting()]):
                return lock
            time.sleep(0.02)
        lock.release()
        time.sleep(0.005 * (attempt % 20))
    raise AssertionError(f"no chunk read was waiting on the lock in {attempts} tries")


def ended_run(job, state):
    """A flow run of the export deployment for `job`, forced into `state`."""
    export_flow.to_deployment(name="export").apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(EXPORT_DEPLOYMENT)
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"job_id": str(job.id)}
        )
        client.set_flow_run_state(run.id, state, force=True)
    return run


def set_row(rt, job_id, sql: str, *params) -> None:
    """Change a job row behind the job store's back (what a crash or a clock leaves)."""
    rt.jobs._one(f"UPDATE export_jobs SET {sql} WHERE id = %s RETURNING *", (*params, str(job_id)))


def dataset_file(db_url: str, folder: Path, sql: str, yaml_text: str) -> Path:
    """Run `sql` (tables for a test) and write a dataset file declaring their modules."""
    with psycopg.connect(db_url) as conn:
        conn.execute(sql)
    path = folder / "datasets.yaml"
    path.write_text(yaml_text)
    return path


def lease_free(url: str, key: int) -> bool:
    """Whether no session holds the lease `key` (a killed process's backend ends shortly)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND objid = %s::int::oid AND granted)", (key,)
        ).fetchone()[0]  # fmt: skip
