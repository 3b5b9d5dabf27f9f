"""Fencing by attempt: a superseded or ended run stops at its next chunk and writes nothing
more; a file committed for a job that ended meanwhile does not outlive it."""

from __future__ import annotations

import hashlib

from flows.datapath.engine import ExportResult
from flows.orchestration.checkpoint import final_key, job_file_prefix, job_temp_prefix
from flows.orchestration.export_flow import export_flow
from flows.orchestration.job_run import JobRun, end_job
from tests.flows.helpers import (
    CHUNKS,
    RUN_TIMEOUT,
    all_chunks_waiting,
    chunk_runs,
    in_background,
    lock_when,
    new_job,
    reference,
    started,
    stored,
)


def keys(rt, prefix: str) -> set[str]:
    return {key for key, _ in rt.storage.list(prefix)}


def test_superseded_run_stops_and_the_next_attempt_resumes_after_its_checkpoint(rt, small_chunks):
    job = new_job(rt)
    job_id = str(job.id)
    run = in_background(export_flow, job_id, return_state=True)
    started(rt, job)
    # What the reconciler does when it takes the run for lost.
    at = rt.jobs.next_attempt(job.id, 0)
    assert at is not None and at.attempt == 1 and 0 < at.processed_rows < 2000
    parts = keys(rt, job_temp_prefix(job_id))
    state = run.result(RUN_TIMEOUT)
    assert state.is_completed() and state.name == "Superseded", state
    after = rt.jobs.get(job.id)
    assert (after.status, after.attempt, after.file_key) == ("processing", 1, None)
    assert (after.processed_rows, after.checkpoint) == (at.processed_rows, at.checkpoint)
    assert parts <= keys(rt, job_temp_prefix(job_id))
    assert keys(rt, job_file_prefix(job_id)) == set()

    resumed = export_flow(job_id, return_state=True)
    assert resumed.is_completed(), resumed.message
    done = rt.jobs.get(job.id)
    assert (done.status, done.attempt, done.processed_rows) == ("completed", 1, 2000)
    assert stored(rt, done.file_key) == reference(rt, done)
    kept = len(at.checkpoint["chunks"])
    assert sorted(chunk_runs(resumed.state_details.flow_run_id)) == list(range(kept, CHUNKS))


def test_cancelled_job_stops_its_run_and_keeps_no_files(rt, small_chunks):
    job = new_job(rt)
    job_id = str(job.id)
    run = in_background(export_flow, job_id, return_state=True)
    started(rt, job)
    # Cancelled while every live chunk read waits, so none is between its read and write.
    lock = lock_when(rt.url, all_chunks_waiting)
    try:
        assert end_job(rt, job_id, "cancelled", "cancelled", "cancelled by request")
        at = rt.jobs.get(job.id)
    finally:
        lock.release()
    state = run.result(RUN_TIMEOUT)
    assert state.is_completed() and state.name == "Superseded", state
    after = rt.jobs.get(job.id)
    assert (after.status, after.error_code, after.file_key) == ("cancelled", "cancelled", None)
    assert (after.processed_rows, after.checkpoint) == (at.processed_rows, at.checkpoint)
    assert keys(rt, job_temp_prefix(job_id)) == keys(rt, job_file_prefix(job_id)) == set()
    # The chunks recorded before the cancel completed; every later one stopped unread.
    runs = chunk_runs(state.state_details.flow_run_id)
    recorded = [c["index"] for c in at.checkpoint["chunks"]]
    assert sorted(i for i, t in runs.items() if t.state.is_completed()) == recorded
    later = [t for i, t in runs.items() if i not in recorded]
    assert later and all(t.state.is_failed() and t.run_count == 1 for t in later)


def committed(rt, job) -> tuple[str, ExportResult]:
    """A file at the job's final key, as assembly leaves it."""
    data = b"id\n1\n"
    key = final_key(str(job.id), job.module, "csv")
    with rt.storage.open_write(key) as f:
        f.write(data)
    return key, ExportResult(rows=1, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_complete_after_the_job_ended_removes_the_file(rt):
    job = new_job(rt)
    run = JobRun(rt, job, job.attempt)
    run.claim(None)
    key, result = committed(rt, job)
    assert rt.jobs.finish(job.id, "cancelled", "cancelled", "cancelled by request")
    assert run.complete(key, result) is False
    assert not rt.storage.exists(key)
    after = rt.jobs.get(job.id)
    assert (after.status, after.file_key) == ("cancelled", None)


def test_complete_by_a_superseded_attempt_keeps_the_file_for_the_newer_one(rt):
    job = new_job(rt)
    run = JobRun(rt, job, job.attempt)
    run.claim(None)
    key, result = committed(rt, job)
    assert rt.jobs.next_attempt(job.id, job.attempt)
    assert run.complete(key, result) is False
    assert rt.storage.exists(key)
    after = rt.jobs.get(job.id)
    assert (after.status, after.attempt, after.file_key) == ("processing", 1, None)
    rt.jobs.finish(job.id, "cancelled", "cancelled", "test over")
