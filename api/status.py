"""The status a client sees: the job row and, for an active job, its flow run's state."""

from __future__ import annotations

from prefect.client.schemas.objects import State, StateType

from flows.control.jobs import FINAL, Job

# Forward order: a status with a lower rank is never reported after a higher one.
RANK = {"pending": 0, "processing": 1}

_BY_TYPE = {
    StateType.SCHEDULED: "pending",  # Scheduled, Late, AwaitingRetry, AwaitingConcurrencySlot
    StateType.PENDING: "pending",
    StateType.PAUSED: "pending",  # Paused, Suspended
    StateType.RUNNING: "processing",  # Running, Retrying
    # The run ended but the row is still active: it is writing its last update (or was
    # superseded by a resumed attempt); only the row may say completed.
    StateType.COMPLETED: "processing",
    StateType.CANCELLING: "cancelled",
    StateType.CANCELLED: "cancelled",
    StateType.FAILED: "failed",
}


def _stopped_by_shutdown(state: State) -> bool:
    # Same test as the flow's hook: a worker shutting down cancels its runs, which the
    # reconciler resumes, so such a run is treated like a crash, not a user's cancel.
    return state.type == StateType.CANCELLED and "shutting down" in (state.message or "").lower()


def export_status(job: Job, state: State | None, max_attempts: int) -> tuple[str, str | None]:
    """(status, Prefect state name) for `job`; `state` is its flow run's, None if unknown."""
    name = state.name if state is not None else None
    if job.status in FINAL:
        return job.status, name
    if state is None:
        return job.status, None
    if state.type == StateType.CRASHED or _stopped_by_shutdown(state):
        # The reconciler resumes a crashed run while attempts are left.
        mapped = "processing" if job.attempt < max_attempts else "failed"
    else:
        mapped = _BY_TYPE.get(state.type, job.status)
    if mapped in RANK and RANK[mapped] < RANK[job.status]:
        return job.status, name
    return mapped, name
