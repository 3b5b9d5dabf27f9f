"""The reconciler's decision for every Prefect state a lost or ended run can be in (no server)."""

from __future__ import annotations

import pytest
from prefect import states

from flows.orchestration.checkpoint import Checkpoint, ChunkFiles
from flows.orchestration.reconcile import decide


@pytest.mark.parametrize(
    "state",
    [
        states.Scheduled(),
        states.Pending(),
        states.Running(),
        states.Late(),
        states.AwaitingRetry(),
        states.Retrying(),
        states.Paused(),
        states.Suspended(),
        states.Cancelling(),
        states.Completed(),
    ],
    ids=lambda s: s.name,
)
def test_runs_still_going_or_finishing_are_left_alone(state):
    assert decide(state, attempt=0, max_attempts=3) is None
    assert decide(state, attempt=3, max_attempts=3) is None


def test_a_user_cancellation_cancels_the_job():
    assert decide(states.Cancelled(message="by user"), 0, 3) == "cancel"


def test_a_worker_shutdown_resumes_instead_of_cancelling():
    stopped = states.Cancelled(message="Runner is shutting down.")
    assert decide(stopped, 0, 3) == "resume"
    assert decide(stopped, 3, 3) == "give_up"


def test_a_failed_run_fails_the_job_whatever_the_attempts():
    assert decide(states.Failed(message="boom"), 0, 3) == "fail"
    assert decide(states.Failed(message="boom"), 9, 3) == "fail"


@pytest.mark.parametrize("state", [states.Crashed(message="killed"), None], ids=["crashed", "lost"])
def test_crashed_or_lost_runs_resume_until_the_limit(state):
    assert [decide(state, n, 2) for n in range(4)] == ["resume", "resume", "give_up", "give_up"]
    assert decide(state, 0, 0) == "give_up"


def test_checkpoint_from_another_plan_starts_over():
    raw = {"fingerprint": "a" * 64, "chunks": [{"index": 0, "lo": None, "hi": "9", "rows": 9}],
           "limit": 9}  # fmt: skip
    same = Checkpoint.load(raw, "a" * 64)
    assert (same.last_key, same.rows, same.next_index, same.limit) == ("9", 9, 1, 9)
    other = Checkpoint.load(raw, "b" * 64)
    assert (other.chunks, other.limit, other.last_key, other.next_index) == ([], None, None, 0)
    assert other.fingerprint == "b" * 64 and other.to_dict()["fingerprint"] == "b" * 64
    assert Checkpoint.load(None, "a" * 64).chunks == []
    assert Checkpoint.load({"fingerprint": "a" * 64}, "a" * 64).chunks == []


def test_checkpoint_round_trips_and_counts_rows():
    cp = Checkpoint("f" * 64)
    cp.add(0, None, "300", 300)
    cp.add(1, "300", "600", 250)
    cp.limit = 300
    again = Checkpoint.load(cp.to_dict(), "f" * 64)
    assert again == cp and again.rows == 550 and again.last_key == "600" and again.next_index == 2
    assert again.chunks[1] == {"index": 1, "lo": "300", "hi": "600", "rows": 250}


def test_chunk_files_of_two_plans_never_share_a_key():
    one, two = ChunkFiles(None, "j", "1" * 64), ChunkFiles(None, "j", "2" * 64)
    assert one.key(3) != two.key(3) and one.key(3).startswith("tmp/j/")
    assert one.key(3) == "tmp/j/1111111111111111/chunk-000003"
