"""Response bodies, camelCase on the wire (pydantic aliases), snake_case in Python."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from flows.control.jobs import Job

Status = Literal["pending", "processing", "completed", "failed", "cancelled", "expired"]


class Body(BaseModel):
    """camelCase aliases; responses are serialised by alias."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class JobError(Body):
    """Why an export failed or was cancelled."""

    code: str
    message: str


class ExportStatus(Body):
    """One export as its owner sees it."""

    id: uuid.UUID
    module: str
    format: str
    strategy: str
    status: Status
    progress: float | None
    processed_rows: int
    total_rows: int | None
    rows_per_second: float | None
    eta_seconds: float | None
    state_name: str | None
    file_url: str | None
    file_bytes: int | None
    sha256: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    error: JobError | None
    schedule_id: uuid.UUID | None = None  # the scheduled export that started it


class DownloadLink(Body):
    """A fresh link to a finished export's file, for clients that open it themselves."""

    url: str
    filename: str
    expires_at: datetime


class ExportPage(Body):
    """A page of the caller's exports, newest first; `nextCursor` fetches the next one."""

    items: list[ExportStatus]
    next_cursor: str | None


class Accepted(Body):
    """A background export was started (or found again by its Idempotency-Key): poll it."""

    job_id: uuid.UUID
    status: Status
    total_rows: int | None
    poll_url: str


class ErrorDetail(Body):
    """The error: a stable code, a message saying what to change, optional details."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(Body):
    """Every error response."""

    error: ErrorDetail


class ModuleColumn(Body):
    """A column the caller may export and filter on, with what its values are."""

    name: str
    label: str
    type: str
    category: str
    labels: list[str] | None
    filterable: bool


class Module(Body):
    """A module the caller may export; `columns` in export order, sensitive ones left out."""

    name: str
    label: str
    key: str
    date_column: str | None
    columns: list[ModuleColumn]


class ModuleLimits(Body):
    """The bounds an export request must keep, and where the strategies change."""

    direct_max_rows: int
    stream_max_rows: int
    max_ids: int
    max_columns: int
    max_filters: int


class Modules(Body):
    """What the export page offers the caller."""

    modules: list[Module]
    operators: list[str]
    limits: ModuleLimits


class Preview(Body):
    """What an export with these options would be: its rows, strategy and file name."""

    total_rows: int
    strategy: Literal["direct", "stream", "background"]
    format: Literal["csv", "xlsx"]
    filename: str


class DevToken(Body):
    """A development token holding every module's permission."""

    token: str
    user: str
    permissions: list[str]
    expires_at: datetime


class Index(Body):
    """What this service is and where to look next."""

    service: str
    page: str
    docs: str
    health: str
    ready: str
    exports: str


class Health(Body):
    """The process answers."""

    status: Literal["ok"]


class Ready(Body):
    """Every part answered its check: each part's outcome by name."""

    status: Literal["ready"]
    parts: dict[str, str]


def status_view(
    job: Job, status: str, state_name: str | None, file_url: str | None
) -> ExportStatus:
    """The view of `job` given its mapped status; figures are derived from the row."""
    done = status == "completed"
    progress = _progress(job, done)
    end = job.finished_at or datetime.now(UTC)
    elapsed = (end - job.started_at).total_seconds() if job.started_at else None
    rate = job.processed_rows / elapsed if elapsed and elapsed > 0 else None
    eta = None
    if status == "processing" and rate and job.total_rows is not None:
        eta = max(0.0, (job.total_rows - job.processed_rows) / rate)
    error = JobError(code=job.error_code, message=job.error or "") if job.error_code else None
    return ExportStatus(
        id=job.id,
        module=job.module,
        format=job.format,
        strategy=job.strategy,
        status=status,
        progress=progress,
        processed_rows=job.processed_rows,
        total_rows=job.total_rows,
        rows_per_second=round(rate, 1) if rate is not None else None,
        eta_seconds=round(eta, 1) if eta is not None else None,
        state_name=state_name,
        file_url=file_url if done else None,
        file_bytes=job.file_bytes,
        sha256=job.sha256,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        schedule_id=job.schedule_id,
        expires_at=job.expires_at,
        error=error,
    )


def _progress(job: Job, done: bool) -> float | None:
    """processed / total in 0..1; None while the count is not in."""
    if done:
        return 1.0
    if job.total_rows is None:
        return 0.0 if job.processed_rows == 0 else None
    if job.total_rows == 0:
        return 0.0
    return min(1.0, job.processed_rows / job.total_rows)
