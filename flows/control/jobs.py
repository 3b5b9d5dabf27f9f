"""The export_jobs table: every export leaves a row; status moves only forward."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from flows.control.database import pg_connect

ACTIVE = ("pending", "processing")
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


_COLUMNS = ", ".join(f.name for f in fields(Job))


class JobStore:
    """Reads and guarded updates of export_jobs; each call is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _one(self, sql: str, params: tuple | dict = ()) -> Job | None:
        with pg_connect(self.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return cur.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple | dict = ()) -> list[Job]:
        with pg_connect(self.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
            return cur.execute(sql, params).fetchall()

    def create(
        self, user_id: str, module: str, fmt: str, strategy: str, options: dict[str, Any]
    ) -> Job:
        """A new pending job for a validated request."""
        return self._one(
            f"INSERT INTO export_jobs (id, user_id, module, format, strategy, options)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (uuid.uuid4(), user_id, module, fmt, strategy, json.dumps(options)),
        )

    def get(self, job_id: uuid.UUID | str) -> Job | None:
        """The job, or None."""
        return self._one(f"SELECT {_COLUMNS} FROM export_jobs WHERE id = %s", (str(job_id),))

    def attach_run(self, job_id: uuid.UUID | str, flow_run_id: uuid.UUID | str) -> Job | None:
        """Record the flow run that works on the job."""
        return self._one(
            f"UPDATE export_jobs SET flow_run_id = %s WHERE id = %s RETURNING {_COLUMNS}",
            (str(flow_run_id), str(job_id)),
        )

    def start(
        self, job_id: uuid.UUID | str, total_rows: int, flow_run_id: uuid.UUID | str | None
    ) -> Job | None:
        """Mark processing (keeps the first start time); None if the job already ended."""
        return self._one(
            f"UPDATE export_jobs SET status = 'processing', total_rows = %s,"
            f" flow_run_id = coalesce(%s, flow_run_id), started_at = coalesce(started_at, now())"
            f" WHERE id = %s AND status IN ('pending', 'processing') RETURNING {_COLUMNS}",
            (total_rows, str(flow_run_id) if flow_run_id else None, str(job_id)),
        )

    def progress(
        self, job_id: uuid.UUID | str, processed_rows: int, checkpoint: dict[str, Any]
    ) -> bool:
        """Rows done and the checkpoint to resume from, in one update."""
        row = self._one(
            f"UPDATE export_jobs SET processed_rows = %s, checkpoint = %s"
            f" WHERE id = %s AND status = 'processing' RETURNING {_COLUMNS}",
            (processed_rows, json.dumps(checkpoint), str(job_id)),
        )
        return row is not None

    def complete(
        self,
        job_id: uuid.UUID | str,
        rows: int,
        file_key: str,
        file_bytes: int,
        sha256: str,
        expires_at: datetime,
    ) -> Job | None:
        """The file is committed: record it."""
        return self._one(
            f"UPDATE export_jobs SET status = 'completed', processed_rows = %s,"
            f" total_rows = greatest(coalesce(total_rows, 0), %s), file_key = %s,"
            f" file_bytes = %s, sha256 = %s, finished_at = now(), expires_at = %s,"
            f" error_code = NULL, error = NULL"
            f" WHERE id = %s AND status IN ('pending', 'processing') RETURNING {_COLUMNS}",
            (rows, rows, file_key, file_bytes, sha256, expires_at, str(job_id)),
        )

    def finish(self, job_id: uuid.UUID | str, status: str, code: str, message: str) -> Job | None:
        """End an active job as failed or cancelled, with a code and readable error."""
        assert status in ("failed", "cancelled")
        return self._one(
            f"UPDATE export_jobs SET status = %s, error_code = %s, error = %s,"
            f" finished_at = now() WHERE id = %s AND status IN ('pending', 'processing')"
            f" RETURNING {_COLUMNS}",
            (status, code, message[:2000], str(job_id)),
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

    def record_attempt(self, job_id: uuid.UUID | str, flow_run_id: uuid.UUID | str) -> Job | None:
        """A re-submitted run: count the attempt in the checkpoint, attach the new run."""
        return self._one(
            f"UPDATE export_jobs SET flow_run_id = %s, checkpoint = jsonb_set("
            f"coalesce(checkpoint, '{{}}'::jsonb), '{{attempts}}',"
            f" to_jsonb(coalesce((checkpoint->>'attempts')::int, 0) + 1))"
            f" WHERE id = %s AND status IN ('pending', 'processing') RETURNING {_COLUMNS}",
            (str(flow_run_id), str(job_id)),
        )

    def active_with_runs(self) -> list[Job]:
        """Background jobs still pending or processing that have a flow run."""
        return self._all(
            f"SELECT {_COLUMNS} FROM export_jobs WHERE status IN ('pending', 'processing')"
            f" AND strategy = 'background' AND flow_run_id IS NOT NULL ORDER BY created_at"
        )

    def failure_rate(self, minutes: int = 60) -> tuple[int, int]:
        """(failed, finished) over the last `minutes`."""
        with pg_connect(self.url) as conn:
            return conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FROM export_jobs"
                " WHERE finished_at > now() - make_interval(mins => %s)"
                " AND status IN ('completed', 'failed')",
                (minutes,),
            ).fetchone()
