"""Direct and streamed jobs whose API process died: found by its free lease, not by a clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.jobs import Job, JobStore, insert_job
from flows.control.lease import INTERRUPTED, end_interrupted, holder_key
from tests.flows.helpers import lease_free

ROOT = Path(__file__).resolve().parents[3]
HOLD = "import sys, time; from flows.control.lease import holder_key;" \
       " print(holder_key(sys.argv[1]), flush=True); time.sleep(600)"  # fmt: skip
USER = "lease-user"
LONG = 3600.0  # legacy rows younger than this are left alone


class Holder:
    """A process of its own holding a lease, as an API process does."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True, env=env
        )
        self.key = int(self.proc.stdout.readline())

    def kill(self) -> None:
        """SIGKILL: no handler, no goodbye to the server."""
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def holders(db_url: str):
    started: list[Holder] = []

    def start() -> Holder:
        started.append(Holder(db_url))
        return started[-1]

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.kill()


def job(url: str, strategy: str, holder: int | None, status: str = "processing") -> Job:
    with pooled(url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
        new = insert_job(cur, USER, "tags", "csv", strategy, {"module": "tags"}, None, holder)
        cur.execute("UPDATE export_jobs SET status = %s WHERE id = %s", (status, new.id))
    return new


def ours(ended: list[Job]) -> list:
    """The ids of this module's jobs among those ended (other tests share the database)."""
    return sorted(j.id for j in ended if j.user_id == USER)


def wait_gone(url: str, key: int) -> None:
    deadline = time.monotonic() + 10
    while not lease_free(url, key):
        assert time.monotonic() < deadline, "the killed process's lease was never freed"
        time.sleep(0.05)


def test_only_jobs_of_a_dead_process_end_interrupted(db_url: str, holders):
    jobs = JobStore(db_url)
    alive, dead = holders(), holders()
    running = job(db_url, "stream", alive.key)
    streaming = job(db_url, "stream", dead.key)
    admitted = job(db_url, "direct", dead.key, status="pending")
    background = job(db_url, "background", None)
    mine = job(db_url, "direct", holder_key(db_url))
    assert ours(end_interrupted(db_url, LONG)) == []  # every holder is alive
    dead.kill()
    wait_gone(db_url, dead.key)
    ended = end_interrupted(db_url, LONG)
    assert ours(ended) == sorted([streaming.id, admitted.id])
    for j in (streaming, admitted):
        row = jobs.get(j.id)
        assert (row.status, row.error_code, row.error) == ("failed", "interrupted", INTERRUPTED)
        assert row.finished_at is not None
    assert [jobs.get(j.id).status for j in (running, background, mine)] == ["processing"] * 3
    assert ours(end_interrupted(db_url, LONG)) == []  # a second pass finds nothing more
    alive.kill()
    wait_gone(db_url, alive.key)
    assert ours(end_interrupted(db_url, LONG)) == [running.id]
    jobs.finish(mine.id, "failed", "test", "over")
    jobs.finish(background.id, "failed", "test", "over")


def test_a_lease_lost_with_its_connection_is_taken_again_under_a_new_key(db_url: str):
    first = holder_key(db_url)
    orphaned = job(db_url, "stream", first)
    with psycopg.connect(db_url, autocommit=True) as conn:
        (ended,) = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE application_name = 'exportflow-lease' AND pid IN (SELECT pid FROM pg_locks"
            " WHERE locktype = 'advisory' AND objid = %s::int::oid)", (first,)
        ).fetchone()  # fmt: skip
    assert ended
    second = holder_key(db_url)
    assert second != first and not lease_free(db_url, second)
    # What ran under the lost lease cannot be told from a dead process's: it ends.
    assert ours(end_interrupted(db_url, LONG)) == [orphaned.id]
    assert holder_key(db_url) == second


def test_rows_from_before_leases_end_only_past_the_longest_export(db_url: str):
    jobs = JobStore(db_url)
    old, young = job(db_url, "stream", None), job(db_url, "direct", None, status="pending")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE export_jobs SET created_at = now() - interval '2 hours' WHERE id = %s",
            (old.id,),
        )
    assert ours(end_interrupted(db_url, LONG)) == [old.id]
    assert jobs.get(young.id).status == "pending"
    jobs.finish(young.id, "failed", "test", "over")
