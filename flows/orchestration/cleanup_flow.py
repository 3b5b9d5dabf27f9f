"""cleanup_flow(): expired files, orphaned parts, crashed runs, and the failure-rate alert."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.events import emit_event

from flows.control.jobs import ACTIVE
from flows.control.storage_keys import chunk_job_id
from flows.orchestration.export_flow import RETRY_DELAYS, retry_if_transient
from flows.orchestration.reconcile import reconcile
from flows.orchestration.runtime import runtime


@task(retries=2, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_if_transient,
      task_run_name="expire-files", persist_result=False)  # fmt: skip
def expire_files() -> int:
    """Delete the files of jobs past expiry, then mark them expired (safe to repeat)."""
    rt = runtime()
    expired = 0
    for job in rt.jobs.due_for_expiry():
        if job.file_key:
            rt.storage.delete(job.file_key)
        expired += rt.jobs.mark_expired(job.id)
    return expired


@task(retries=2, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_if_transient,
      task_run_name="remove-orphans", persist_result=False)  # fmt: skip
def remove_orphans(max_age_seconds: int) -> int:
    """Delete the project's temporary files older than the bound whose job is not running;
    nothing else under the storage root is ever listed for deletion."""
    rt = runtime()
    cutoff = time.time() - max_age_seconds
    removed = 0
    for key, modified in rt.storage.list_temporary():
        if modified > cutoff:
            continue
        job_id = chunk_job_id(key)
        job = rt.jobs.get(job_id) if job_id is not None else None
        if job is not None and job.status in ACTIVE:
            continue
        removed += rt.storage.delete(key)
    return removed


@task(task_run_name="failure-rate", persist_result=False)
def check_failure_rate(threshold: float) -> float:
    """Alert (log and event) when more than `threshold` of the last hour's exports failed."""
    failed, finished = runtime().jobs.failure_rate(60)
    rate = failed / finished if finished else 0.0
    if finished and rate > threshold:
        get_run_logger().warning(
            "export failure rate %.0f%% over the last hour (%d of %d)", 100 * rate, failed, finished
        )
        emit_event(
            event="exportflow.failure-rate.high",
            resource={"prefect.resource.id": "exportflow.exports"},
            payload={"failed": failed, "finished": finished, "rate": rate},
        )
    return rate


@flow(name="cleanup", persist_result=False)
def cleanup_flow() -> dict:
    """One pass of housekeeping; overlapping runs do no harm."""
    settings = runtime().settings
    return {
        "expired": expire_files(),
        "orphans": remove_orphans(settings.orphan_max_age_seconds),
        "reconciled": reconcile(settings.max_resume_attempts, settings.submit_grace_seconds),
        "failure_rate": check_failure_rate(settings.failure_rate_alert),
    }
