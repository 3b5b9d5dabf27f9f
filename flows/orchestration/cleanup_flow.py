"""cleanup_flow(): expired files, orphaned parts, crashed runs, and the failure-rate alert."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound

from flows.control.jobs import ACTIVE, Job
from flows.control.storage_keys import chunk_job_id
from flows.orchestration.export_flow import RETRY_DELAYS, retry_if_transient, stopped_by_shutdown
from flows.orchestration.job_run import end_job
from flows.orchestration.runtime import runtime
from flows.orchestration.submit import submit_and_attach


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


def _run_state(client, job: Job):
    """The state of the job's flow run; None when Prefect no longer knows the run."""
    try:
        return client.read_flow_run(job.flow_run_id).state
    except ObjectNotFound:
        return None


def decide(state, attempt: int, max_attempts: int) -> str | None:
    """What an active job needs, given its flow run's state (None: Prefect lost the run):
    None (leave it), "cancel", "fail", "give_up" (crashed too often) or "resume"."""
    if state is not None and (not state.is_final() or state.is_completed()):
        return None  # still running, or finishing its own bookkeeping
    if state is not None and state.is_cancelled() and not stopped_by_shutdown(state):
        return "cancel"
    if state is not None and state.is_failed():
        return "fail"
    # Crashed, stopped by a worker shutting down, or lost with the Prefect database.
    return "give_up" if attempt >= max_attempts else "resume"


_ENDINGS = {
    "cancel": ("cancelled", "cancelled", "cancelled by request"),
    "fail": ("failed", "failed", "the export failed; see the flow run for details"),
    "give_up": ("failed", "crashed", "the export stopped {n} times without finishing"),
}


def _reconcile_one(rt, client, job: Job, max_attempts: int) -> str | None:
    """Act on one active job whose run may have ended without it; returns what was done."""
    action = decide(_run_state(client, job), job.attempt, max_attempts)
    if action is None:
        return None
    if action == "resume":
        resumed = rt.jobs.next_attempt(job.id, job.attempt)
        if resumed is None:
            return None  # another reconciler got there first, or the job just ended
        submit_and_attach(rt.jobs, resumed)
        return "resubmitted"
    status, code, message = _ENDINGS[action]
    message = message.format(n=max_attempts + 1)
    return status if end_job(rt, str(job.id), status, code, message) else None


@task(task_run_name="reconcile", persist_result=False)
def reconcile(max_attempts: int, submit_grace_seconds: float) -> dict[str, int]:
    """Jobs whose run crashed, was stopped by a worker shutting down, or is unknown to
    Prefect are resubmitted as a new attempt to resume, up to a limit; runs that ended
    without updating their job (a lost hook) end the job the same way; jobs whose
    submitter died before handing them to Prefect are submitted."""
    rt = runtime()
    counts = dict.fromkeys(("resubmitted", "failed", "cancelled", "submitted", "not_submitted"), 0)
    with get_client(sync_client=True) as client:
        for job in rt.jobs.active_with_runs():
            try:
                outcome = _reconcile_one(rt, client, job, max_attempts)
            except Exception as exc:  # e.g. Prefect refused a submission: next pass retries
                get_run_logger().warning("could not reconcile job %s: %s", job.id, exc)
                outcome = "not_submitted"
            if outcome:
                counts[outcome] += 1
    for job in rt.jobs.unsubmitted(submit_grace_seconds):
        try:
            submit_and_attach(rt.jobs, job)
        except Exception as exc:  # one job's submission must not stop the others
            get_run_logger().warning("could not submit job %s: %s", job.id, exc)
            counts["not_submitted"] += 1
            continue
        counts["submitted"] += 1
    return counts


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
