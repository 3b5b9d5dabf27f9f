"""cleanup_flow through Prefect's test harness: expiry, orphans, crashed runs, failure alert."""

from __future__ import annotations

import os
import time
import uuid

from prefect.client.orchestration import get_client
from prefect.states import Crashed

from flows.orchestration.checkpoint import ChunkFiles
from flows.orchestration.cleanup_flow import cleanup_flow
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import ended_run, new_job, set_row


def part_key(job_id: str, index: int) -> str:
    """A chunk file key as a run writes it."""
    return ChunkFiles(None, job_id, "f" * 64).key(index)


def test_expired_files_deleted_exactly_and_twice_is_harmless(rt):
    old, fresh = new_job(rt, columns=["id"]), new_job(rt, columns=["id"])
    for job in (old, fresh):
        assert export_flow(str(job.id), return_state=True).is_completed()
    set_row(rt, old.id, "expires_at = now() - interval '1 minute'")
    old_key, fresh_key = rt.jobs.get(old.id).file_key, rt.jobs.get(fresh.id).file_key
    first = cleanup_flow()
    assert first["expired"] >= 1
    assert not rt.storage.exists(old_key) and rt.storage.exists(fresh_key)
    assert rt.jobs.get(old.id).status == "expired" and rt.jobs.get(fresh.id).status == "completed"
    assert cleanup_flow()["expired"] == 0


def test_orphaned_parts_removed_but_running_jobs_kept(rt):
    running = new_job(rt)
    set_row(rt, running.id, "status = 'processing'")
    orphan_id = str(uuid.uuid4())
    for job_id in (str(running.id), orphan_id):
        with rt.storage.open_write(part_key(job_id, 0)) as f:
            f.write(b"part")
    young_orphan = str(uuid.uuid4())
    with rt.storage.open_write(part_key(young_orphan, 0)) as f:
        f.write(b"part")
    old = time.time() - 2 * rt.settings.orphan_max_age_seconds
    for job_id in (str(running.id), orphan_id):
        os.utime(rt.storage.path(part_key(job_id, 0)), (old, old))
    cleanup_flow()
    assert rt.storage.exists(part_key(str(running.id), 0))
    assert not rt.storage.exists(part_key(orphan_id, 0))
    assert rt.storage.exists(part_key(young_orphan, 0))
    set_row(rt, running.id, "status = 'failed'")


def test_crashed_run_is_resubmitted_then_resumes_to_identical_file(rt):
    job = new_job(rt, format="csv", gzip=True)
    ref = new_job(rt, format="csv", gzip=True)
    assert export_flow(str(ref.id), return_state=True).is_completed()
    run = ended_run(job, Crashed(message="process killed"))
    set_row(rt, job.id, "status = 'processing', flow_run_id = %s", str(run.id))

    result = cleanup_flow()
    assert result["reconciled"]["resubmitted"] == 1
    resubmitted = rt.jobs.get(job.id)
    assert resubmitted.flow_run_id != run.id and resubmitted.attempt == 1
    with get_client(sync_client=True) as client:
        new_run = client.read_flow_run(resubmitted.flow_run_id)
    assert new_run.name == f"export-products-{job.id}" and "format:csv" in new_run.tags
    # The worker picks the new run up; here it runs in-process.
    assert export_flow(str(job.id), return_state=True).is_completed()
    assert rt.jobs.get(job.id).sha256 == rt.jobs.get(ref.id).sha256


def test_crashed_too_often_fails_with_code(rt):
    job = new_job(rt)
    run = ended_run(job, Crashed(message="killed"))
    attempts = rt.settings.max_resume_attempts
    set_row(rt, job.id, "status = 'processing', flow_run_id = %s, attempt = %s",
            str(run.id), attempts)  # fmt: skip
    cleanup_flow()
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "crashed")


def test_run_stopped_by_worker_shutdown_is_resubmitted_not_cancelled(rt):
    from prefect.states import Cancelled

    job = new_job(rt)
    run = ended_run(job, Cancelled(message="Runner is shutting down."))
    set_row(rt, job.id, "status = 'processing', flow_run_id = %s", str(run.id))
    assert cleanup_flow()["reconciled"]["resubmitted"] == 1
    assert rt.jobs.get(job.id).status == "processing"
    assert export_flow(str(job.id), return_state=True).is_completed()
