"""A resumed run never joins chunk files written under another plan or other writer options."""

from __future__ import annotations

import hashlib

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.orchestration import export_flow as module
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import new_job, reference, stored


def crash_after(monkeypatch, chunks: int) -> None:
    original = module.export_chunk.fn

    def dies(job_id, attempt, index, *bounds):
        if index == chunks:
            raise SystemExit("worker killed")
        return original(job_id, attempt, index, *bounds)

    monkeypatch.setattr(module.export_chunk, "fn", dies)


def crashed_job(rt, monkeypatch, after_chunks: int) -> str:
    """A csv+gzip job whose run died after `after_chunks` chunks, its checkpoint left."""
    job_id = str(new_job(rt, format="csv", gzip=True).id)
    with monkeypatch.context() as m:
        crash_after(m, after_chunks)
        with pytest.raises(SystemExit):
            export_flow(job_id)
    return job_id


def chunk_tasks(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(t.name for t in runs if t.name.startswith("chunk-"))


def test_changed_writer_options_start_over_instead_of_mixing_chunks(rt, monkeypatch):
    job_id = crashed_job(rt, monkeypatch, 3)
    stuck = rt.jobs.get(job_id)
    assert stuck.status == "processing" and len(stuck.checkpoint["chunks"]) == 3
    before = reference(rt, stuck)

    # The operator changes the gzip level before the job is resumed.
    monkeypatch.setattr(rt.settings, "gzip_level", 1)
    state = export_flow(job_id, return_state=True)
    assert state.is_completed()
    done = rt.jobs.get(job_id)
    after = reference(rt, done)
    assert after != before  # the option really changes the bytes...
    assert stored(rt, done.file_key) == after  # ...and no chunk of the old plan was joined
    assert hashlib.sha256(after).hexdigest() == done.sha256
    assert chunk_tasks(state.state_details.flow_run_id) == [f"chunk-{i}" for i in range(7)]


def test_same_plan_resumes_after_the_checkpoint(rt, monkeypatch):
    job_id = crashed_job(rt, monkeypatch, 4)
    state = export_flow(job_id, return_state=True)
    done = rt.jobs.get(job_id)
    assert stored(rt, done.file_key) == reference(rt, done)
    assert chunk_tasks(state.state_details.flow_run_id) == [f"chunk-{i}" for i in range(4, 7)]
