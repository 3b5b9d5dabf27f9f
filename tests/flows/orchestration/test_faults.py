"""Real faults landed at a known point of a running export: a terminated connection, a
column renamed under the run, a statement timeout, a count that never arrives."""

from __future__ import annotations

import threading
import time

import psycopg
from prefect.client.orchestration import get_client

from flows.control.errors import SourceError
from flows.orchestration import export_flow as module
from flows.orchestration.checkpoint import job_file_prefix, job_temp_prefix
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import (
    CHUNKS,
    READ,
    RUN_TIMEOUT,
    TableLock,
    all_chunks_waiting,
    chunk_runs,
    in_background,
    lock_when,
    new_job,
    reference,
    started,
    stored,
    wait_for,
)


def test_terminated_read_is_retried_to_identical_file(rt, small_chunks):
    job = new_job(rt)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt, job)
    lock = lock_when(rt.url, lambda kinds: READ in kinds)
    try:
        pid = next(pid for pid, kind in lock.waiting() if kind == READ)
        lock.terminate(pid)
    finally:
        lock.release()
    state = run.result(RUN_TIMEOUT)
    assert state.is_completed(), state.message
    done = rt.jobs.get(job.id)
    assert (done.status, done.processed_rows) == ("completed", 2000)
    assert stored(rt, done.file_key) == reference(rt, done)
    counts = sorted(t.run_count for t in chunk_runs(state.state_details.flow_run_id).values())
    assert counts == [1] * (CHUNKS - 1) + [2]


def run_count_by_chunk(state) -> dict[int, int]:
    """How many times each chunk task of the run ran."""
    return {i: t.run_count for i, t in chunk_runs(state.state_details.flow_run_id).items()}


def test_column_renamed_mid_export_fails_at_once_with_source_error(rt, small_chunks):
    job = new_job(rt)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt, job)
    renamed = False
    try:
        # Renamed while every live chunk read waits: they all resolve the old name after it.
        lock = lock_when(rt.url, all_chunks_waiting)
        try:
            lock.conn.execute("ALTER TABLE products RENAME COLUMN weight_kg TO weight_gone")
            lock.commit()
            renamed = True
        finally:
            lock.release()
        state = run.result(RUN_TIMEOUT)
    finally:
        if renamed:
            with psycopg.connect(rt.url, autocommit=True) as conn:
                conn.execute("ALTER TABLE products RENAME COLUMN weight_gone TO weight_kg")
    assert state.is_failed()
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "source_error")
    # A plain sentence for the user; the driver text (with the column) goes to the log.
    assert failed.error == "a column or table used by this export no longer exists"
    assert failed.file_key is None
    counts = run_count_by_chunk(state)
    assert counts and set(counts.values()) == {1}
    assert rt.storage.list(job_temp_prefix(str(job.id))) == []
    assert rt.storage.list(job_file_prefix(str(job.id))) == []


def test_statement_timeout_fails_with_timeout_code(rt, small_chunks, monkeypatch):
    monkeypatch.setattr(rt.settings, "statement_timeout_seconds", 1)
    job = new_job(rt)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt, job)
    # Whatever reads next (a chunk task or the flow's bound probe) waits on the lock.
    lock = TableLock(rt.url)
    try:
        # Three times the timeout: every read waiting on the lock runs past it.
        time.sleep(3)
    finally:
        lock.release()
    state = run.result(RUN_TIMEOUT)
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "timeout")
    assert state.is_failed() and failed.file_key is None
    assert set(run_count_by_chunk(state).values()) == {1}


def flow_run_state(flow_run_id):
    """The flow run's state on the server."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def test_count_only_feeds_progress(rt, monkeypatch):
    release = threading.Event()

    def count_after_the_run(job_id, attempt):
        release.wait(RUN_TIMEOUT)
        raise SourceError("count failed after the run")

    monkeypatch.setattr(module.count_rows, "fn", count_after_the_run)
    job = new_job(rt)
    run = in_background(export_flow, str(job.id), return_state=True)
    seen = []
    try:

        def finished():
            now = rt.jobs.get(job.id)
            seen.append((now.status, now.total_rows))
            return now.status == "completed"

        wait_for(finished, "the job to complete while its count waits", RUN_TIMEOUT)
        done = rt.jobs.get(job.id)
        wait_for(lambda: flow_run_state(done.flow_run_id).is_completed(), "a Completed run", 15)
        # Prefect holds the flow call open until the count's thread ends; the run is done.
        assert not run.done()
    finally:
        release.set()
    state = run.result(RUN_TIMEOUT)
    assert state.is_completed(), state.message
    assert {total for status, total in seen if status != "completed"} == {None}
    assert ("processing", None) in seen
    done = rt.jobs.get(job.id)
    assert (done.total_rows, done.processed_rows) == (2000, 2000)
    assert stored(rt, done.file_key) == reference(rt, done)
