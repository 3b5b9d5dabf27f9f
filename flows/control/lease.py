"""Which process runs a direct or streamed export: a PostgreSQL advisory lock it holds.

An API process takes one session-level advisory lock (its lease) before its first direct
or streamed export and keeps it on a connection of its own; each such job row names the
lease (`holder`). PostgreSQL frees the lock the moment that connection ends, which is when
the process dies (SIGKILL, OOM, a crash). The reconciler then takes the lock itself for
an instant: the rows naming a lock it could take have no process left, and end `failed`
with `interrupted`. No clock is involved, so a slow export is never taken for a dead one,
and a dead one is found on the reconciler's next pass rather than after a timeout.
"""

from __future__ import annotations

import os
import random
import threading

import psycopg
from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.errors import Interrupted, SourceUnavailable
from flows.control.jobs import _ACTIVE_SQL, _COLUMNS, Job
from flows.control.logs import finished_export

# The first of the two int4 keys of every lease; the second tells the processes apart.
NAMESPACE = 0x4546_4C57
# A host that vanishes sends no FIN: these make the server drop its connection, and so
# free the lease, within about 25 s. No idle timeout may end the lease's session.
_SESSION_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
    " -c idle_session_timeout=0"
)
INTERRUPTED = "the export stopped because the server process running it ended; export again"


class Lease:
    """This process's advisory lock on one database, taken on first use, again after a
    fork or a lost connection (under a new key: rows of the old one are interrupted)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.key: int | None = None
        self.pid: int | None = None
        self.lock = threading.Lock()

    def current(self) -> int:
        """The key this process holds now."""
        with self.lock:
            if self.pid != os.getpid():
                # A forked child shares the parent's socket: never touch (or close) it.
                self.conn = None
            if not self._held():
                self._take()
            return self.key

    def _held(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            self.conn.execute("")  # one round trip tells a server restart from a live lease
            return True
        except psycopg.Error:
            self.conn.close()
            return False

    def _take(self) -> None:
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, options=_SESSION_OPTIONS,
                application_name="exportflow-lease",
            )  # fmt: skip
        except psycopg.OperationalError as exc:
            raise SourceUnavailable("the database could not be reached", detail=str(exc)) from exc
        while True:
            key = random.randint(1, 2**31 - 1)
            taken = conn.execute(
                "SELECT pg_try_advisory_lock(%s::int, %s::int)", (NAMESPACE, key)
            ).fetchone()[0]
            if taken:  # else another process drew the same key: draw again
                self.conn, self.key, self.pid = conn, key, os.getpid()
                return


_leases: dict[str, Lease] = {}
_leases_lock = threading.Lock()


def holder_key(url: str) -> int:
    """The lease this process holds on the database at `url` (taken now if need be)."""
    with _leases_lock:
        lease = _leases.setdefault(url, Lease(url))
    return lease.current()


def end_interrupted(url: str, legacy_after_seconds: float) -> list[Job]:
    """End, `failed` with `interrupted`, every active direct or streamed job whose process
    is gone: its lease is free. Rows from before leases existed have no holder; they end
    once older than any direct or streamed export may run (`legacy_after_seconds`)."""
    # The xact lock is taken (and freed at commit) only where no process holds the lease.
    with pooled(url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
        jobs = cur.execute(
            f"UPDATE export_jobs SET status = 'failed', error_code = %s, error = %s,"
            f" finished_at = now() WHERE status IN {_ACTIVE_SQL} AND strategy <> 'background'"
            f" AND CASE WHEN holder IS NULL"
            f" THEN created_at < now() - make_interval(secs => %s)"
            f" ELSE pg_try_advisory_xact_lock(%s::int, holder) END RETURNING {_COLUMNS}",
            (Interrupted.code, INTERRUPTED, legacy_after_seconds, NAMESPACE),
        ).fetchall()
    for job in jobs:
        finished_export(job)
    return jobs
