"""export_flow through Prefect's test harness: real flow and task runs, real database and files."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from prefect.client.orchestration import get_client

from flows.orchestration.checkpoint import job_temp_prefix
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import new_job, reference, stored


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_completes_with_file_progress_and_state(rt, fmt):
    job = new_job(rt, format=fmt, gzip=fmt == "csv")
    state = export_flow(str(job.id), return_state=True)
    assert (
        state.is_completed()
        and state.message == f"2,000 rows, {rt.jobs.get(job.id).file_bytes:,} bytes"
    )
    done = rt.jobs.get(job.id)
    assert (done.status, done.processed_rows, done.total_rows) == ("completed", 2000, 2000)
    data = stored(rt, done.file_key)
    assert done.file_key == f"exports/{job.id}/products.{'csv.gz' if fmt == 'csv' else 'xlsx'}"
    assert hashlib.sha256(data).hexdigest() == done.sha256 and len(data) == done.file_bytes
    assert data == reference(rt, done)
    assert done.expires_at > done.finished_at > done.started_at
    assert rt.storage.list(job_temp_prefix(str(job.id))) == []
    assert [p["rows"] for p in done.checkpoint["chunks"]] == [300] * 6 + [200]


def test_run_name_progress_artifact_and_tasks_via_client(rt):
    job = new_job(rt)
    state = export_flow(str(job.id), return_state=True)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.name == f"export-products-{job.id}"
        assert run.state.is_completed()
        artifacts = client.read_artifacts()
        mine = [a for a in artifacts if a.key == f"export-progress-{job.id}"]
        assert mine and mine[0].type == "progress" and float(mine[0].data) == 100.0
        tasks = client.read_task_runs()
        names = {t.name for t in tasks if t.flow_run_id == run.id}
        assert {f"chunk-{i}" for i in range(7)} <= names


def test_resume_after_crash_gives_identical_file(rt):
    job = new_job(rt, format="csv")
    first = export_flow(str(job.id), return_state=True)
    assert first.is_completed()
    expected = rt.jobs.get(job.id).sha256
    # A second job, crashed after three chunks: its checkpoint and parts are left behind.
    crashed = new_job(rt, format="csv")
    job_id = str(crashed.id)
    from flows.orchestration import export_flow as module

    original = module.export_chunk.fn

    def dies_after_three(job_id, attempt, index, lo, hi):
        if index == 3:
            raise SystemExit("worker killed")
        return original(job_id, attempt, index, lo, hi)

    module.export_chunk.fn = dies_after_three
    try:
        with pytest.raises(SystemExit):
            export_flow(job_id)
    finally:
        module.export_chunk.fn = original
    stuck = rt.jobs.get(job_id)
    assert stuck.status == "failed" or len(stuck.checkpoint["chunks"]) == 3
    rt.jobs._one(
        "UPDATE export_jobs SET status = 'processing' WHERE id = %s RETURNING *", (job_id,)
    )
    stored_keys = [key for key, _ in rt.storage.list(job_temp_prefix(job_id))]
    assert [k.rsplit("-", 1)[1] for k in stored_keys][:3] == ["000000", "000001", "000002"]
    state = export_flow(job_id, return_state=True)
    assert state.is_completed()
    assert rt.jobs.get(job_id).sha256 == expected
    # The resumed run read only the chunks after the checkpoint.
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs()
    resumed = sorted(
        t.name for t in tasks
        if t.flow_run_id == state.state_details.flow_run_id and t.name.startswith("chunk-")
    )  # fmt: skip
    assert resumed == [f"chunk-{i}" for i in range(3, 7)]


def test_transient_error_in_one_chunk_is_retried_to_identical_file(rt, monkeypatch):
    from flows.control.errors import SourceUnavailable
    from flows.orchestration import export_flow as module

    monkeypatch.setattr(module, "RETRY_DELAYS", [0])
    job = new_job(rt)
    original = module.export_chunk.fn
    calls = []

    def flaky(job_id, attempt, index, lo, hi):
        calls.append(index)
        if index == 2 and calls.count(2) == 1:
            raise SourceUnavailable("connection lost")
        return original(job_id, attempt, index, lo, hi)

    monkeypatch.setattr(module.export_chunk, "fn", flaky)
    monkeypatch.setattr(module.export_chunk, "retry_delay_seconds", [0])
    state = export_flow(str(job.id), return_state=True)
    assert state.is_completed() and calls.count(2) == 2
    done = rt.jobs.get(job.id)
    assert stored(rt, done.file_key) == reference(rt, done)


def test_terminal_error_fails_at_once_with_code(rt, monkeypatch):
    from flows.control.errors import SourceError
    from flows.orchestration import export_flow as module

    job = new_job(rt)
    calls = []

    def broken(job_id, attempt, index, lo, hi):
        calls.append(index)
        raise SourceError('column "name" does not exist')

    monkeypatch.setattr(module.export_chunk, "fn", broken)
    state = export_flow(str(job.id), return_state=True)
    assert state.is_failed()
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "source_error")
    assert "does not exist" in failed.error and failed.file_key is None
    assert sorted(set(calls)) == calls[: len(set(calls))] and len(calls) <= 2
    assert rt.storage.list(job_temp_prefix(str(job.id))) == []


def test_unknown_job_fails(rt):
    state = export_flow(str(uuid.uuid4()), return_state=True)
    assert state.is_failed()
