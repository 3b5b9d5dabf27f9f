"""The job store against the real table: owners, fencing by attempt, status never backwards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flows.control.errors import JobNotFound
from flows.control.jobs import JobStore


@pytest.fixture
def jobs(db_url) -> JobStore:
    return JobStore(db_url)


def new(jobs: JobStore, user: str = "ann"):
    return jobs.create(user, "products", "csv", "background", {"module": "products"})


def test_a_job_is_read_by_its_owner_only_and_others_see_not_found(jobs):
    job = new(jobs, "ann")
    assert jobs.get_owned(job.id, "ann").id == job.id
    for user, job_id in [("bob", job.id), ("ann", uuid.uuid4()), ("ann", "not-a-uuid")]:
        with pytest.raises(JobNotFound) as info:
            jobs.get_owned(job_id, user)
        assert info.value.code == "job_not_found" and "bob" not in info.value.message


def test_updates_are_fenced_by_the_attempt(jobs):
    job = new(jobs)
    assert jobs.claim(job.id, 1, None) is None  # not this job's attempt
    claimed = jobs.claim(job.id, 0, str(uuid.uuid4()))
    assert claimed.status == "processing" and claimed.started_at is not None
    assert jobs.progress(job.id, 0, 10, {"chunks": []}) and jobs.set_total(job.id, 0, 99)
    resumed = jobs.next_attempt(job.id, 0)
    assert resumed.attempt == 1 and resumed.flow_run_id is None
    assert jobs.next_attempt(job.id, 0) is None  # a second reconciler loses the race
    # The superseded attempt changes nothing any more.
    assert not jobs.progress(job.id, 0, 20, {"chunks": [1]})
    assert not jobs.set_total(job.id, 0, 5)
    assert jobs.finish(job.id, "failed", "boom", "boom", attempt=0) is None
    file = ("exports/x/products.csv", 10, "ab" * 32)
    assert jobs.complete(job.id, 0, 20, file, datetime.now(UTC)) is None
    assert not jobs.owns(job.id, 0) and jobs.owns(job.id, 1)
    now = jobs.get(job.id)
    assert (now.status, now.processed_rows, now.total_rows, now.checkpoint) == (
        "processing", 10, 99, {"chunks": []}
    )  # fmt: skip
    done = jobs.complete(job.id, 1, 20, file, datetime.now(UTC) + timedelta(hours=1))
    assert (done.status, done.processed_rows, done.total_rows, done.file_key) == (
        "completed", 20, 99, "exports/x/products.csv"
    )  # fmt: skip


def test_status_never_moves_backwards(jobs):
    job = new(jobs)
    assert jobs.finish(job.id, "cancelled", "cancelled", "by request") is not None
    assert jobs.claim(job.id, 0, None) is None
    assert jobs.next_attempt(job.id, 0) is None
    assert jobs.finish(job.id, "failed", "x", "x") is None
    assert jobs.get(job.id).status == "cancelled"
    assert not jobs.owns(job.id, 0)


def test_unsubmitted_background_jobs_are_found_after_the_grace_period(jobs):
    job = new(jobs)
    assert job.id not in {j.id for j in jobs.unsubmitted(60)}
    jobs._one(
        "UPDATE export_jobs SET created_at = now() - interval '2 minutes' WHERE id = %s"
        " RETURNING *",
        (str(job.id),),
    )
    assert job.id in {j.id for j in jobs.unsubmitted(60)}
    jobs.attach_run(job.id, 0, str(uuid.uuid4()))
    assert job.id not in {j.id for j in jobs.unsubmitted(60)}
    assert job.id in {j.id for j in jobs.active_with_runs()}
