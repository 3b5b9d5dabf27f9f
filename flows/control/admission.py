"""Admitting a new export: the per-user limits and the Idempotency-Key, in one transaction.

Every replica of the API counts the same rows: the counts and the insert run under a
per-user advisory lock held until the transaction commits, so two requests of one user
are admitted one after the other and the second sees the first's row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.errors import IdempotencyKeyReused, RateLimited, TooManyActive
from flows.control.jobs import _ACTIVE_SQL, _COLUMNS, Job, JobStore, insert_job
from flows.control.lease import holder_key

KEY_WINDOW = "interval '24 hours'"
# A background job has no window to leave: ask again after a typical poll interval.
ACTIVE_RETRY_SECONDS = 30


@dataclass(frozen=True)
class Limits:
    """Exports per user per hour (all strategies), and active background jobs per user."""

    per_hour: int
    active_background: int


def admit(
    jobs: JobStore,
    user_id: str,
    strategy: str,
    options: dict[str, Any],
    limits: Limits,
    key: str | None = None,
    schedule_id: str | None = None,
) -> tuple[Job, bool]:
    """(job, created): the user's job of `key` from the last 24 h if any, else a new pending
    job once the limits allow it (RateLimited or TooManyActive otherwise)."""
    # This process runs a direct or streamed export: its row names the process's lease.
    holder = None if strategy == "background" else holder_key(jobs.url)
    with pooled(jobs.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (user_id,))
        if key is not None:
            found = cur.execute(
                f"SELECT {_COLUMNS} FROM export_jobs WHERE user_id = %s"
                f" AND idempotency_key = %s AND created_at > now() - {KEY_WINDOW}",
                (user_id, key),
            ).fetchone()
            if found is not None and found.options != options:
                # A key names one request: the same key with another body is a client bug,
                # and answering with the old job would hand over the wrong file.
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {key!r} was sent with a different request in the last"
                    " 24 hours; send a new key for a new export"
                )
            if found is not None:
                return found, False
            # An older use of the key is past its window: the key is free again.
            conn.execute(
                "UPDATE export_jobs SET idempotency_key = NULL"
                " WHERE user_id = %s AND idempotency_key = %s",
                (user_id, key),
            )
        _check(conn, user_id, strategy, limits)
        module, fmt = options["module"], options.get("format", "csv")
        job = insert_job(cur, user_id, module, fmt, strategy, options, key, holder, schedule_id)
        return job, True


def _check(conn, user_id: str, strategy: str, limits: Limits) -> None:
    """Raise when the user is over a limit (the caller holds the user's lock)."""
    count, wait = conn.execute(
        "SELECT count(*), ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now()))"
        " FROM export_jobs WHERE user_id = %s AND created_at > now() - interval '1 hour'",
        (user_id,),
    ).fetchone()
    if count >= limits.per_hour:
        raise RateLimited(
            f"{count} exports in the last hour, at most {limits.per_hour} allowed;"
            f" try again in {int(wait)} seconds",
            int(wait),
        )
    if strategy != "background":
        return
    (active,) = conn.execute(
        f"SELECT count(*) FROM export_jobs WHERE user_id = %s AND strategy = 'background'"
        f" AND status IN {_ACTIVE_SQL}",
        (user_id,),
    ).fetchone()
    if active >= limits.active_background:
        raise TooManyActive(
            f"{active} background exports are still running, at most"
            f" {limits.active_background} at once; wait for one to finish or cancel one",
            ACTIVE_RETRY_SECONDS,
        )
