"""Flow runs through the Prefect client: read a run's state, cancel a job's run."""

from __future__ import annotations

import logging
import uuid

import anyio
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from api.errors import PrefectUnavailable

log = logging.getLogger("api")

# A poll must answer quickly even when Prefect is down: the row's status is then reported.
READ_TIMEOUT_SECONDS = 3.0
WRITE_TIMEOUT_SECONDS = 10.0
CANCEL_MESSAGE = "cancelled by request"


async def read_state(flow_run_id: uuid.UUID) -> State | None:
    """The run's state; None when Prefect does not know the run or cannot be reached."""
    try:
        with anyio.fail_after(READ_TIMEOUT_SECONDS):
            async with get_client() as client:
                return (await client.read_flow_run(flow_run_id)).state
    except ObjectNotFound:
        return None
    except Exception as exc:  # a status poll never fails for Prefect's sake
        log.warning("could not read flow run %s: %r", flow_run_id, exc)
        return None


async def cancel_run(flow_run_id: uuid.UUID) -> bool:
    """Cancel the run: True when it was started and is now Cancelling (its flow's
    on_cancellation hook ends the job); False when it never started, has ended, or is
    unknown, so that the caller ends the job itself."""
    try:
        with anyio.fail_after(WRITE_TIMEOUT_SECONDS):
            async with get_client() as client:
                try:
                    state = (await client.read_flow_run(flow_run_id)).state
                except ObjectNotFound:
                    return False
                if state is None or state.is_final():
                    return False
                if state.is_scheduled():
                    # No process yet, so no hook would run: the run ends here. (Any run
                    # left Cancelled with its job active is ended by the reconciler.)
                    await client.set_flow_run_state(
                        flow_run_id, Cancelled(message=CANCEL_MESSAGE), force=True
                    )
                    return False
                await client.set_flow_run_state(
                    flow_run_id, Cancelling(message=CANCEL_MESSAGE), force=True
                )
                return True
    except Exception as exc:
        raise PrefectUnavailable(
            "the run could not be cancelled", detail=f"flow run {flow_run_id}: {exc!r}"
        ) from exc
