"""The export_jobs table: every export leaves a row; status moves only forward.

A flow run works on one attempt of a job. Every update a run makes names that attempt
(`WHERE attempt = %s`), so a run that was superseded (resubmitted after a crash while it
still lived) or whose job ended (cancelled, failed) changes nothing: its update finds no
row, and the run stops."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.errors import JobNotFound
from flows.control.logs import finished_export

ACTIVE = ("pending", "processing")
_ACTIVE_SQL = "('pending', 'processing')"
FINAL = ("completed", "failed", "cancelled", "expired")


@dataclass
class Job:
    """One row of export_jobs."""

    id: uuid.UUID
    user_id: str
    module: str
    format: str
    strategy: str
    status: str
    total_rows: int | None
    processed_rows: int
    options: dict[str, Any]
    checkpoint: dict[str, Any] | None
    flow_run_id: uuid.UUID | None
    file_key: str | None
    file_bytes: int | None
    sha256: str | None
    error_code: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    attempt: int
    idempotency_key: str | None = None  # the client's Idempotency-Key, when it sent one
    holder: int | None = None  # direct and stream: the lease of the API process running it
    notifications: list[dict[str, Any]] | None = None  # delivery attempts, oldest first
    schedule_id: uuid.UUID | None = None  # the scheduled export that started it, if any


_COLUMNS = ", ".join(f.name for f in fields(Job))


class JobStore:
    """Reads and guarded updates of export_jobs; each call is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _one(self, sql: str, params: tuple | dict = ()) -> Job | None:
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return cur.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple | dict = ()) -> list[Job]:
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return cur.execute(sql, params).fetchall()

    def create(
        self, user_id: str, module: str, fmt: str, strategy: str, options: dict[str, Any],
        schedule_id: str | None = None,
    ) -> Job:  # fmt: skip
        """A new pending job for a validated request."""
        with pooled(self.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return insert_job(cur, user_id, module, fmt, strategy, options, schedule_id=schedule_id)

    def get(self, job_id: uuid.UUID | str) -> Job | None:
        """The job, or None."""
        return self._one(f"SELECT {_COLUMNS} FROM export_jobs WHERE id = %s", (str(job_id),))

    def get_owned(self, job_id: uuid.UUID | str, user_id: str) -> Job:
        """The caller's job; another user's job is not found, exactly like a missing one."""
        job = None
        if _is_uuid(str(job_id)):
            job = self._one(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE id = %s AND user_id = %s",
                (str(job_id), user_id),
            )
        if job is None:
            raise JobNotFound(f"no export job {job_id}; list your exports to find its id")
        return job

    def list_owned(
        self,
        user_id: str,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        statuses: list[str] | None = None,
        module: str | None = None,
    ) -> list[Job]:
        """The user's jobs, newest first (ties by id), from after the (created_at, id) of
        the last one seen; optionally only these statuses and this module."""
        where, params = ["user_id = %s"], [user_id]
        if after is not None:
            # A row-value comparison matches the ORDER BY, so pages neither skip nor repeat.
            where.append("(created_at, id) < (%s, %s)")
            params += [after[0], str(after[1])]
        if statuses:
            where.append("status = ANY(%s)")
            params.append(list(statuses))
        if module is not None:
            where.append("module = %s")
            params.append(module)
        return self._all(
            f"SELECT {_COLUMNS} FROM export_jobs WHERE {' AND '.join(where)}"
            f" ORDER BY created_at DESC, id DESC LIMIT %s",
            (*params, limit),
        )

    def attach_run(
        self, job_id: uuid.UUID | str, attempt: int, flow_run_id: uuid.UUID | str
    ) -> Job | None:
        """Record the flow run submitted for `attempt`."""
        return self._one(
            f"UPDATE export_jobs SET flow_run_id = %s WHERE id = %s AND attempt = %s"
            f" AND status IN {_ACTIVE_SQL} RETURNING {_COLUMNS}",
            (str(flow_run_id), str(job_id), attempt),
        )

    def claim(
        self, job_id: uuid.UUID | str, attempt: int, flow_run_id: uuid.UUID | str | None
    ) -> Job | None:
        """Mark processing for this run (keeps the first start time); None if the job ended
        or belongs to another attempt."""
        return self._one(
            f"UPDATE export_jobs SET status = 'processing',"
            f" flow_run_id = coalesce(%s, flow_run_id), started_at = coalesce(started_at, now())"
            f" WHERE id = %s AND attempt = %s AND status IN {_ACTIVE_SQL} RETURNING {_COLUMNS}",
            (str(flow_run_id) if flow_run_id else None, str(job_id), attempt),
        )

    def owns(self, job_id: uuid.UUID | str, attempt: int) -> bool:
        """Whether `attempt` is still the job's current, active attempt."""
        with pooled(self.url) as conn:
            row = conn.execute(
                f"SELECT 1 FROM export_jobs WHERE id = %s AND attempt = %s"
                f" AND status IN {_ACTIVE_SQL}",
                (str(job_id), attempt),
            ).fetchone()
        return row is not None

    def set_total(self, job_id: uuid.UUID | str, attempt: int, total_rows: int) -> bool:
        """The count is in: progress can show a fraction."""
        return self._fenced("total_rows = %s", (total_rows,), job_id, attempt) is not None

    def progress(
        self, job_id: uuid.UUID | str, attempt: int, processed_rows: int, checkpoint: dict
    ) -> bool:
        """Rows done and the checkpoint to resume from, in one update."""
        row = self._fenced(
            "processed_rows = %s, checkpoint = %s",
            (processed_rows, json.dumps(checkpoint)),
            job_id,
            attempt,
        )
        return row is not None

    def complete(
        self,
        job_id: uuid.UUID | str,
        attempt: int,
        rows: int,
        file: tuple[str, int, str],
        expires_at: datetime,
    ) -> Job | None:
        """The file (key, bytes, sha256) is committed: record it."""
        key, size, sha256 = file
        job = self._fenced(
            "status = 'completed', processed_rows = %s,"
            " total_rows = greatest(coalesce(total_rows, 0), %s), file_key = %s,"
            " file_bytes = %s, sha256 = %s, finished_at = now(), expires_at = %s,"
            " error_code = NULL, error = NULL",
            (rows, rows, key, size, sha256, expires_at),
            job_id,
            attempt,
        )
        # Every export ends here or in finish: its record is logged from the updated row.
        return finished_export(job)

    def finish(
        self,
        job_id: uuid.UUID | str,
        status: str,
        code: str,
        message: str,
        attempt: int | None = None,
    ) -> Job | None:
        """End an active job as failed or cancelled with a code and a readable message;
        with `attempt`, only if that attempt still owns the job."""
        assert status in ("failed", "cancelled")
        fence = "" if attempt is None else " AND attempt = %s"
        params = (status, code, message[:2000], str(job_id))
        job = self._one(
            f"UPDATE export_jobs SET status = %s, error_code = %s, error = %s,"
            f" finished_at = now() WHERE id = %s AND status IN {_ACTIVE_SQL}{fence}"
            f" RETURNING {_COLUMNS}",
            params if attempt is None else (*params, attempt),
        )
        return finished_export(job)

    def next_attempt(self, job_id: uuid.UUID | str, seen: int) -> Job | None:
        """Supersede attempt `seen` (a crashed or lost run): the job's next run owns it.
        None if another reconciler got there first or the job ended."""
        return self._one(
            f"UPDATE export_jobs SET attempt = attempt + 1, flow_run_id = NULL"
            f" WHERE id = %s AND attempt = %s AND status IN {_ACTIVE_SQL} RETURNING {_COLUMNS}",
            (str(job_id), seen),
        )

    def _fenced(self, assignments: str, params: tuple, job_id, attempt: int) -> Job | None:
        return self._one(
            f"UPDATE export_jobs SET {assignments} WHERE id = %s AND attempt = %s"
            f" AND status IN {_ACTIVE_SQL} RETURNING {_COLUMNS}",
            (*params, str(job_id), attempt),
        )

    def due_for_expiry(self, limit: int = 500) -> list[Job]:
        """Completed jobs past their expiry, oldest first."""
        return self._all(
            f"SELECT {_COLUMNS} FROM export_jobs WHERE status = 'completed'"
            f" AND expires_at < now() ORDER BY expires_at LIMIT %s",
            (limit,),
        )

    def mark_expired(self, job_id: uuid.UUID | str) -> bool:
        """Completed → expired, once its file is gone; False if another run did it."""
        row = self._one(
            f"UPDATE export_jobs SET status = 'expired' WHERE id = %s AND status = 'completed'"
            f" RETURNING {_COLUMNS}",
            (str(job_id),),
        )
        return row is not None

    def active_with_runs(self) -> list[Job]:
        """Background jobs still pending or processing that have a flow run."""
        return self._all(
            f"SELECT {_COLUMNS} FROM export_jobs WHERE status IN {_ACTIVE_SQL}"
            f" AND strategy = 'background' AND flow_run_id IS NOT NULL ORDER BY created_at"
        )

    def unsubmitted(self, older_than_seconds: float) -> list[Job]:
        """Active background jobs without a flow run: created, or moved to a new attempt,
        by a process that died (or failed to submit) before handing them to Prefect."""
        return self._all(
            f"SELECT {_COLUMNS} FROM export_jobs WHERE status IN {_ACTIVE_SQL}"
            f" AND strategy = 'background' AND flow_run_id IS NULL"
            f" AND created_at < now() - make_interval(secs => %s) ORDER BY created_at",
            (older_than_seconds,),
        )

    def failure_rate(self, minutes: int = 60) -> tuple[int, int]:
        """(failed, finished) over the last `minutes`."""
        with pooled(self.url) as conn:
            return conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FROM export_jobs"
                " WHERE finished_at > now() - make_interval(mins => %s)"
                " AND status IN ('completed', 'failed')",
                (minutes,),
            ).fetchone()


def insert_job(
    cur, user_id: str, module: str, fmt: str, strategy: str, options: dict,
    key: str | None = None, holder: int | None = None, schedule_id: str | None = None,
) -> Job:  # fmt: skip
    """Insert a new pending job through `cur` (a Job-row cursor), in the caller's transaction."""
    return cur.execute(
        f"INSERT INTO export_jobs"
        f" (id, user_id, module, format, strategy, options, idempotency_key, holder, schedule_id)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (uuid.uuid4(), user_id, module, fmt, strategy, json.dumps(options), key, holder,
         schedule_id),
    ).fetchone()  # fmt: skip


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
