"""export_flow through Prefect's test harness: real flow and task runs, real database and files."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.orchestration.checkpoint import job_temp_prefix
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import new_job, reference, stored, task_runs


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
        key = ArtifactFilter(key=ArtifactFilterKey(any_=[f"export-progress-{job.id}"]))
        mine = client.read_artifacts(artifact_filter=key)
        assert [(a.type, float(a.data)) for a in mine] == [("progress", 100.0)]
    names = {t.name for t in task_runs(run.id)}
    assert names == {f"chunk-{i}" for i in range(7)} | {f"count-{job.id}"}


def test_unknown_job_fails(rt):
    state = export_flow(str(uuid.uuid4()), return_state=True)
    assert state.is_failed()
