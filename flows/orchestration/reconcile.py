"""The reconciler: jobs whose process ended without them, found and resumed or ended.

It runs as its own small flow (`reconcile`), started by an automation the moment an
export run crashes or is stopped by a shutting-down worker, and inside every cleanup run
as the fallback for a missed event. Passes may overlap: every change is fenced."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.control.jobs import Job
from flows.control.lease import end_interrupted
from flows.orchestration.export_flow import RETRY_DELAYS, retry_if_transient, stopped_by_shutdown
from flows.orchestration.job_run import end_job
from flows.orchestration.notify_task import notify
from flows.orchestration.runtime import runtime
from flows.orchestration.submit import submit_and_attach

OUTCOMES = ("resubmitted", "failed", "cancelled", "submitted", "not_submitted", "interrupted")


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
    if not end_job(rt, str(job.id), status, code, message):
        return None
    # Its run is gone, so the job's notifications are sent from here (in this task).
    notify(rt, str(job.id), as_tasks=False)
    return status


def legacy_after_seconds(settings) -> float:
    """How long any direct or streamed export may take, its count included."""
    return settings.direct_timeout_seconds + settings.stream_timeout_seconds + 60


@task(retries=2, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_if_transient,
      task_run_name="reconcile", persist_result=False)  # fmt: skip
def reconcile(max_attempts: int, submit_grace_seconds: float) -> dict[str, int]:
    """Jobs whose run crashed, was stopped by a worker shutting down, or is unknown to
    Prefect are resubmitted as a new attempt to resume, up to a limit; runs that ended
    without updating their job (a lost hook) end the job the same way; jobs whose
    submitter died before handing them to Prefect are submitted; direct and streamed
    exports whose API process died end `interrupted`."""
    rt = runtime()
    counts = dict.fromkeys(OUTCOMES, 0)
    counts["interrupted"] = len(end_interrupted(rt.url, legacy_after_seconds(rt.settings)))
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


@flow(name="reconcile", persist_result=False, retries=1, retry_delay_seconds=5)
def reconcile_flow() -> dict[str, int]:
    """One pass of the reconciler alone (what a crashed export run triggers)."""
    settings = runtime().settings
    return reconcile(settings.max_resume_attempts, settings.submit_grace_seconds)
