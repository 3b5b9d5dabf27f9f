"""Telling the user an export ended: one delivery attempt on one channel, recorded on the
job whatever its outcome, so the status resource shows how delivery went."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flows.control import notify_email, webhooks
from flows.control.connections import pooled
from flows.control.errors import ExportflowError, NotificationFailed
from flows.control.job_view import final_view, requested_channels
from flows.control.jobs import Job, JobStore
from flows.control.settings import Settings
from flows.control.storage import Storage

log = logging.getLogger("exportflow.notifications")

EVENTS = {
    "completed": "export.completed",
    "failed": "export.failed",
    "cancelled": "export.cancelled",
}
INTERNAL = "the notification could not be sent because of an internal error"


def record_attempt(url: str, job_id: str, entry: dict) -> None:
    """Append one attempt to the job's record (one statement: channels never collide)."""
    with pooled(url) as conn:
        conn.execute(
            "UPDATE export_jobs SET notifications = notifications || %s::jsonb WHERE id = %s",
            (json.dumps([entry]), job_id),
        )


def webhook_payload(job: Job, settings: Settings) -> dict:
    """`{"event", "job"}`: the job as the status endpoint returns it."""
    view = final_view(job, settings).model_dump(mode="json", by_alias=True)
    return {"event": EVENTS[job.status], "job": view}


def _send(job: Job, channel: str, settings: Settings, storage: Storage) -> int | None:
    """One attempt on `channel`; the receiver's HTTP status for a webhook."""
    if channel == "email":
        notify_email.send(notify_email.compose(job, settings, storage), settings)
        return None
    event = EVENTS[job.status]
    headers = {"Exportflow-Event": event, "Exportflow-Delivery": f"{job.id}.{event}"}
    url = job.options["notify"]["webhook"]
    sent = webhooks.post(url, webhook_payload(job, settings), settings, headers)
    return sent.status_code


def deliver(
    jobs: JobStore, settings: Settings, storage: Storage, job_id: str, channel: str,
    attempt: int, last: bool,
) -> str:  # fmt: skip
    """Attempt `attempt` to notify the ended job on `channel`, recorded on the job; raises
    the attempt's error (transient ones are worth a retry unless this is the `last`)."""
    job = jobs.get(job_id)
    if job is None or job.status not in EVENTS or channel not in requested_channels(job):
        return "skipped"  # nothing to tell, or not asked for
    entry = {
        "channel": channel,
        "event": EVENTS[job.status],
        "attempt": attempt,
        "at": datetime.now(UTC).isoformat(),
    }
    try:
        code = _send(job, channel, settings, storage)
    except Exception as exc:
        known = isinstance(exc, ExportflowError)
        retry = known and exc.transient and not last
        entry |= {
            "outcome": "retrying" if retry else "failed",
            "statusCode": getattr(exc, "status_code", None),
            "error": exc.message if known else INTERNAL,
        }
        record_attempt(jobs.url, job_id, entry)
        log.warning("%s notification of export %s: %s", channel, job_id, entry["error"],
                    exc_info=None if known else exc)  # fmt: skip
        if not known:
            raise NotificationFailed(INTERNAL) from exc
        raise
    record_attempt(jobs.url, job_id, entry | {"outcome": "delivered", "statusCode": code})
    return "delivered"
