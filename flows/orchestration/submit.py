"""Hand a background job to the `export` deployment; the worker picks it up."""

from __future__ import annotations

from prefect.deployments import run_deployment

from flows.control.jobs import Job

EXPORT_DEPLOYMENT = "export/export"


def submit_job(job: Job, as_subflow: bool = False) -> str:
    """Create the flow run for `job` (named and tagged for the UI); returns its id."""
    run = run_deployment(
        EXPORT_DEPLOYMENT,
        parameters={"job_id": str(job.id)},
        flow_run_name=f"export-{job.module}-{job.id}",
        tags=[f"module:{job.module}", f"format:{job.format}", f"user:{job.user_id}"],
        timeout=0,
        as_subflow=as_subflow,
    )
    return str(run.id)
