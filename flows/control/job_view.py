"""An export as its owner sees it, built from its job row: the status endpoint's body and
the `job` of a webhook are this one resource."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from flows.control.jobs import Job
from flows.control.settings import Settings

Status = Literal["pending", "processing", "completed", "failed", "cancelled", "expired"]
CHANNELS = ("email", "webhook")


class Camel(BaseModel):
    """camelCase aliases; serialised by alias."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class JobError(Camel):
    """Why an export failed or was cancelled."""

    code: str
    message: str


class NotificationStatus(Camel):
    """One channel the export notifies when it ends, and how its delivery went."""

    channel: Literal["email", "webhook"]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None


class ExportStatus(Camel):
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
    notifications: list[NotificationStatus] = []
    schedule_id: uuid.UUID | None = None  # the scheduled export that started it


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
    return from_row(
        ExportStatus,
        job,
        status=status,
        progress=progress,
        rows_per_second=round(rate, 1) if rate is not None else None,
        eta_seconds=round(eta, 1) if eta is not None else None,
        state_name=state_name,
        file_url=file_url if done else None,
        error=row_error(job.error_code, job.error),
        notifications=notification_statuses(job),
    )


M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: object, **derived: Any) -> M:
    """`model` from the row's fields of the same names, and the `derived` ones."""
    names = model.model_fields.keys() - derived.keys()
    return model(**{n: getattr(row, n) for n in names if hasattr(row, n)}, **derived)


def row_error(code: str | None, message: str | None) -> JobError | None:
    """A row's stored error (code and message), if it has one."""
    return JobError(code=code, message=message or "") if code else None


def _progress(job: Job, done: bool) -> float | None:
    """processed / total in 0..1; None while the count is not in."""
    if done:
        return 1.0
    if job.total_rows is None:
        return 0.0 if job.processed_rows == 0 else None
    if job.total_rows == 0:
        return 0.0
    return min(1.0, job.processed_rows / job.total_rows)


def requested_channels(job: Job) -> list[str]:
    """The channels the job's request asked to be notified on."""
    notify = (job.options or {}).get("notify") or {}
    wanted = {"email": bool(notify.get("email")), "webhook": bool(notify.get("webhook"))}
    return [c for c in CHANNELS if wanted[c]]


def notification_statuses(job: Job) -> list[NotificationStatus]:
    """Each requested channel's delivery so far: pending until an attempt delivered it or
    failed for good (a retry still to come keeps it pending)."""
    out = []
    for channel in requested_channels(job):
        tries = [a for a in job.notifications or [] if a.get("channel") == channel]
        last = tries[-1] if tries else {}
        outcome = last.get("outcome")
        status = outcome if outcome in ("delivered", "failed") else "pending"
        at = datetime.fromisoformat(last["at"]) if last.get("at") else None
        out.append(
            NotificationStatus(
                channel=channel,
                status=status,
                attempts=len(tries),
                last_error=last.get("error"),
                last_attempt_at=at,
            )
        )
    return out


def friendly_name(job: Job) -> str:
    """`<module>-export-<UTC yyyymmddTHHMMSSZ>.<ext>`, stamped when the file was finished."""
    stamp = (job.finished_at or job.created_at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = (job.file_key or "").rsplit("/", 1)[-1]
    ext = base[len(job.module) + 1 :] if base.startswith(f"{job.module}.") else job.format
    return f"{job.module}-export-{stamp}.{ext}"


def download_url(job: Job, settings: Settings) -> str:
    """The API's download endpoint for the job (a bearer token follows it to the file)."""
    return f"{settings.public_api_url.rstrip('/')}/api/exports/{job.id}/download"


def final_view(job: Job, settings: Settings) -> ExportStatus:
    """What the status endpoint returns for an ended job (its row alone decides)."""
    return status_view(job, job.status, None, download_url(job, settings))
