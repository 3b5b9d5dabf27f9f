"""Hand a background job to the `export` deployment; a worker picks it up."""

from __future__ import annotations

import logging

from prefect.deployments import run_deployment

from flows.control.jobs import Job

EXPORT_DEPLOYMENT = "export/export"

log = logging.getLogger("exportflow.submit")


def submit_job(job: Job, as_subflow: bool = False) -> str:
    """Create the flow run for the job's current attempt (named and tagged for the UI) and
    return its id. The idempotency key is the job and attempt: submitting the same attempt
    twice (a retried request, a reconciler racing the submitter) returns the same run."""
    run = run_deployment(
        EXPORT_DEPLOYMENT,
        parameters={"job_id": str(job.id), "attempt": job.attempt},
        flow_run_name=f"export-{job.module}-{job.id}",
        tags=[f"module:{job.module}", f"format:{job.format}", f"user:{job.user_id}"],
        idempotency_key=f"{job.id}:{job.attempt}",
        timeout=0,
        as_subflow=as_subflow,
    )
    return str(run.id)


def submit_and_attach(jobs, job: Job) -> str:
    """Submit the job's current attempt and record the run on the job."""
    run_id = submit_job(job)
    jobs.attach_run(job.id, job.attempt, run_id)
    return run_id


def submit_background(jobs, job: Job, total: int) -> None:
    """Record the count and hand a new background job to Prefect (the API's and a
    schedule's way alike); a failed hand-over is left to the reconciler, which submits
    background jobs without a run after a grace period."""
    jobs.set_total(job.id, job.attempt, total)
    try:
        submit_and_attach(jobs, job)
    except Exception as exc:
        log.warning("export %s not submitted yet (the reconciler will): %r", job.id, exc)
