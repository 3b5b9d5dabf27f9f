"""The one status mapping: every Prefect state type and the names the design lists."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prefect import states
from prefect.client.schemas.objects import StateType

from api.status import export_status
from flows.control.jobs import Job

MAX = 3


def job(status: str = "pending", attempt: int = 0) -> Job:
    return Job(
        id=uuid.uuid4(), user_id="u", module="tags", format="csv", strategy="background",
        status=status, total_rows=None, processed_rows=0, options={}, checkpoint=None,
        flow_run_id=uuid.uuid4(), file_key=None, file_bytes=None, sha256=None,
        error_code=None, error=None, created_at=datetime.now(UTC), started_at=None,
        finished_at=None, expires_at=None, attempt=attempt,
    )  # fmt: skip


ACTIVE_CASES = [
    (states.Scheduled(), "Scheduled", "pending"),
    (states.Pending(), "Pending", "pending"),
    (states.Late(), "Late", "pending"),
    (states.AwaitingRetry(), "AwaitingRetry", "pending"),
    (states.AwaitingConcurrencySlot(), "AwaitingConcurrencySlot", "pending"),
    (states.Paused(), "Paused", "pending"),
    (states.Suspended(), "Suspended", "pending"),
    (states.Running(), "Running", "processing"),
    (states.Retrying(), "Retrying", "processing"),
    (states.Cancelling(), "Cancelling", "cancelled"),
    (states.Cancelled(), "Cancelled", "cancelled"),
    (states.Failed(), "Failed", "failed"),
    (states.Crashed(), "Crashed", "processing"),
    # The run finished its work; only the row may say completed.
    (states.Completed(), "Completed", "processing"),
]


@pytest.mark.parametrize(("state", "name", "expected"), ACTIVE_CASES, ids=lambda v: str(v))
def test_pending_job_follows_its_run(state, name, expected):
    assert state.name == name
    assert export_status(job("pending"), state, MAX) == (expected, name)


def test_every_state_type_is_covered():
    covered = {state.type for state, _, _ in ACTIVE_CASES}
    assert covered == set(StateType)


@pytest.mark.parametrize(
    "state",
    [states.Scheduled(), states.Pending(), states.Late(), states.AwaitingRetry(), states.Paused()],
    ids=lambda s: s.name,
)
def test_status_never_moves_backwards(state):
    # A resumed attempt waits in Scheduled while the row already says processing.
    assert export_status(job("processing"), state, MAX) == ("processing", state.name)


@pytest.mark.parametrize("attempt", [0, 1, 2])
def test_crashed_with_attempts_left_is_processing(attempt):
    assert export_status(job("processing", attempt), states.Crashed(), MAX)[0] == "processing"


@pytest.mark.parametrize("attempt", [3, 4])
def test_crashed_with_no_attempts_left_is_failed(attempt):
    assert export_status(job("processing", attempt), states.Crashed(), MAX)[0] == "failed"


def test_cancelled_by_a_worker_shutting_down_is_resumed_like_a_crash():
    state = states.Cancelled(message="Flow run was cancelled because the worker is shutting down")
    assert export_status(job("processing", 0), state, MAX)[0] == "processing"
    assert export_status(job("processing", MAX), state, MAX)[0] == "failed"


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", "expired"])
@pytest.mark.parametrize(
    "state", [None, states.Running(), states.Scheduled(), states.Crashed(), states.Failed()]
)
def test_terminal_row_always_wins(status, state):
    got, name = export_status(job(status), state, MAX)
    assert got == status
    assert name == (state.name if state else None)


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_no_run_yet_reports_the_row(status):
    assert export_status(job(status), None, MAX) == (status, None)
