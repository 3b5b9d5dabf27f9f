"""A finished export's file: its friendly name, the link to it, and the checks before either."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

from api.errors import FileGone, Gone, InvalidLink, NotReady
from flows.control.job_view import friendly_name
from flows.control.jobs import Job
from flows.control.settings import Settings
from flows.control.storage import Storage

ASK_AGAIN = "ask for a new link (GET /api/exports/{id}/download)"
FILE_GONE = (
    "the file of export {id} is no longer available; ask for a new link"
    " (GET /api/exports/{id}/download), or start a new export if it has expired"
)


def check_downloadable(job: Job, now: datetime | None = None) -> str:
    """The job's file key; NotReady while it has no file, Gone once the file expired."""
    now = now or datetime.now(UTC)
    if job.status == "expired" or (
        job.status == "completed" and job.expires_at is not None and job.expires_at <= now
    ):
        raise FileGone(FILE_GONE.format(id=job.id))
    if job.status != "completed" or not job.file_key:
        raise NotReady(f"export {job.id} is {job.status} and has no file to download")
    return job.file_key


def link_ttl(job: Job, settings: Settings, now: datetime | None = None) -> int:
    """Seconds a fresh link lives: the configured lifetime, cut to the file's remaining life."""
    ttl = settings.link_ttl_seconds
    if job.expires_at is not None:
        left = (job.expires_at - (now or datetime.now(UTC))).total_seconds()
        ttl = min(ttl, math.floor(left))
    return max(1, ttl)


def sign_link(job: Job, storage: Storage, settings: Settings) -> tuple[str, int]:
    """A fresh link to the job's file and its lifetime in seconds; Gone when the file is
    no longer in storage."""
    key = check_downloadable(job)
    if not storage.exists(key):
        raise FileGone(FILE_GONE.format(id=job.id))
    ttl = link_ttl(job, settings)
    return storage.sign(key, ttl, filename=friendly_name(job)), ttl


def job_id_of(key: str) -> uuid.UUID | None:
    """The job a file key belongs to (`exports/<job>/<name>`), if it has that shape."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "exports":
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


def check_link(storage: Storage, key: str, expires: int, signature: str) -> None:
    """A signed local link: InvalidLink if altered or forged, Gone if expired."""
    # Authenticity first, at the link's own expiry instant: a forged link is a 403 even
    # when its (forged) expiry has passed.
    if not storage.verify(key, expires, signature, now=float(expires)):
        raise InvalidLink("this download link is not valid; " + ASK_AGAIN)
    if time.time() > expires:
        raise Gone("this download link has expired; " + ASK_AGAIN)
