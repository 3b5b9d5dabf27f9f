"""A background attempt within its time limit: past it the job fails with timeout and leaves
no file, whatever was waiting; within it the file is the same as with no limit."""

from __future__ import annotations

import time

from flows.orchestration.checkpoint import job_file_prefix, job_temp_prefix
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import (
    READ,
    RUN_TIMEOUT,
    in_background,
    lock_when,
    new_job,
    reference,
    started,
    stored,
)

LIMIT = 5


def test_an_attempt_past_its_limit_fails_with_timeout_and_no_files(rt, small_chunks, monkeypatch):
    monkeypatch.setattr(rt.settings, "background_timeout_seconds", LIMIT)
    job = new_job(rt)
    job_id = str(job.id)
    run = in_background(export_flow, job_id, return_state=True)
    started(rt, job)
    assert rt.storage.list(job_temp_prefix(job_id)), "chunk files are stored as the run goes"
    # Held until the run ends: a chunk task's read and the flow's probe wait on it, and
    # only the attempt's limit (not the 300 s statement timeout) can end them.
    lock = lock_when(rt.url, lambda kinds: READ in kinds, settle=0.5)
    locked = time.monotonic()
    try:
        state = run.result(RUN_TIMEOUT)
        waited = time.monotonic() - locked
    finally:
        lock.release()
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "timeout")
    assert failed.error == (
        f"the export took longer than the {LIMIT} s a background export may take;"
        " export fewer rows (filters, fewer columns)"
    )
    assert state.is_failed() and state.message.endswith(failed.error)
    assert waited < LIMIT + 5
    assert failed.file_key is None
    assert rt.storage.list(job_temp_prefix(job_id)) == []
    assert rt.storage.list(job_file_prefix(job_id)) == []


def test_an_attempt_within_its_limit_writes_the_same_file(rt, small_chunks, monkeypatch):
    # Shorter than the statement timeout: every read, in the flow and its tasks, is bounded.
    monkeypatch.setattr(rt.settings, "background_timeout_seconds", 120)
    job = new_job(rt)
    state = export_flow(str(job.id), return_state=True)
    assert state.is_completed(), state.message
    done = rt.jobs.get(job.id)
    assert (done.status, done.processed_rows) == ("completed", 2000)
    assert stored(rt, done.file_key) == reference(rt, done)
