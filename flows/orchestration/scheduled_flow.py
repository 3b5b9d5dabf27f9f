"""scheduled_export(schedule_id): what each firing of a saved schedule runs in Prefect.

It only starts a normal background export job (the `export` deployment does the work),
owned by the schedule's owner and linked to the schedule. Runs are named after the
schedule, so the Prefect UI lists them under the name its owner gave it."""

from __future__ import annotations

from prefect import flow, task
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.orchestration.export_flow import RETRY_DELAYS, retry_if_transient
from flows.orchestration.runtime import runtime
from flows.orchestration.scheduling import run_schedule


def _run_name() -> str:
    schedule_id = flow_run.parameters["schedule_id"]
    schedule = runtime().schedules.get(schedule_id)
    return schedule.name if schedule else f"scheduled-export-{schedule_id}"


@task(retries=2, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_if_transient,
      task_run_name="start-export-{schedule_id}", persist_result=False)  # fmt: skip
def start_export(schedule_id: str) -> str | None:
    """The firing's background job (its id), or None for a schedule gone or paused."""
    return run_schedule(runtime(), schedule_id)


# A failed firing is not retried as a whole: its task rides out transient faults, and the
# next firing comes on its own.
@flow(name="scheduled-export", flow_run_name=_run_name, retries=0, retry_delay_seconds=0,
      persist_result=False)  # fmt: skip
def scheduled_export(schedule_id: str):
    """Start this firing's export job."""
    job_id = start_export(schedule_id)
    if job_id is None:
        return Completed(message="the schedule is paused or deleted: nothing started")
    return Completed(message=f"started export job {job_id}", data=job_id)
