"""Opaque cursors for newest-first pages: the (created_at, id) of the last row shown."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from flows.control.errors import InvalidRequest
from flows.control.jobs import Job


def encode_cursor(job: Job) -> str:
    """The cursor that continues after `job`."""
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) from a cursor; InvalidRequest when it was not one we gave out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, job_id = json.loads(raw)
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None:
            raise ValueError("naive time")
        return created, uuid.UUID(job_id)
    except (ValueError, TypeError):
        raise InvalidRequest(
            "cursor: not a cursor this API gave out; use `nextCursor` of the previous page"
        ) from None
