"""The reconciler and the failure-rate alert, against the harness's Prefect server."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.states import Crashed, Running, Scheduled
from psycopg.rows import class_row

from flows.control.connections import pooled
from flows.control.jobs import Job, insert_job
from flows.control.lease import NAMESPACE
from flows.orchestration.cleanup_flow import cleanup_flow
from flows.orchestration.reconcile import reconcile_flow
from tests.flows.helpers import ended_run, lease_free, new_job, set_row, wait_for

ALERT = "exportflow.failure-rate.high"


def submitted_runs(job) -> list:
    """The flow runs submit_job created for `job` (it names them after the job)."""
    only = FlowRunFilter(name=FlowRunFilterName(any_=[f"export-{job.module}-{job.id}"]))
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=only)


def test_job_whose_run_is_running_is_not_touched(rt):
    job = new_job(rt)
    run = ended_run(job, Running())
    set_row(rt, job.id, "status = 'processing', flow_run_id = %s", str(run.id))
    before = rt.jobs.get(job.id)
    cleanup_flow()
    assert rt.jobs.get(job.id) == before
    assert submitted_runs(job) == []
    rt.jobs.finish(job.id, "cancelled", "cancelled", "test over")


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_job_whose_run_prefect_lost_is_resubmitted_as_the_next_attempt(rt, status):
    # A Prefect database reset loses runs that never started as well as running ones.
    job = new_job(rt)
    run = ended_run(job, Running() if status == "processing" else Scheduled())
    set_row(rt, job.id, "status = %s, flow_run_id = %s", status, str(run.id))
    with get_client(sync_client=True) as client:
        client.delete_flow_run(run.id)
    assert reconcile_flow()["resubmitted"] == 1
    after = rt.jobs.get(job.id)
    assert (after.status, after.attempt) == (status, 1)
    assert after.flow_run_id not in (None, run.id)
    with get_client(sync_client=True) as client:
        new = client.read_flow_run(after.flow_run_id)
    assert new.parameters == {"job_id": str(job.id), "attempt": 1}
    assert new.idempotency_key == f"{job.id}:1" and new.state.is_scheduled()
    rt.jobs.finish(job.id, "cancelled", "cancelled", "test over")


def test_job_never_submitted_is_submitted_once(rt):
    ended_run(new_job(rt), Crashed())  # the deployment submit_job names
    job = new_job(rt)
    grace = rt.settings.submit_grace_seconds
    set_row(rt, job.id, "created_at = now() - make_interval(secs => %s)", grace + 60)
    cleanup_flow()
    first = rt.jobs.get(job.id)
    assert (first.status, first.attempt) == ("pending", 0) and first.flow_run_id is not None
    # As if that pass died between creating the run and recording it on the job.
    set_row(rt, job.id, "flow_run_id = NULL")
    cleanup_flow()
    assert rt.jobs.get(job.id).flow_run_id == first.flow_run_id
    runs = submitted_runs(job)
    assert [r.id for r in runs] == [first.flow_run_id]
    assert runs[0].idempotency_key == f"{job.id}:0"
    rt.jobs.finish(job.id, "cancelled", "cancelled", "test over")


def test_jobs_already_ended_are_never_touched(rt):
    crashed, unsubmitted = new_job(rt), new_job(rt)
    run = ended_run(crashed, Crashed(message="killed"))
    set_row(rt, crashed.id, "flow_run_id = %s", str(run.id))
    rt.jobs.finish(crashed.id, "cancelled", "cancelled", "cancelled by request")
    set_row(rt, unsubmitted.id, "created_at = now() - interval '1 day'")
    rt.jobs.finish(unsubmitted.id, "cancelled", "cancelled", "cancelled by request")
    before = [rt.jobs.get(crashed.id), rt.jobs.get(unsubmitted.id)]
    cleanup_flow()
    assert [rt.jobs.get(crashed.id), rt.jobs.get(unsubmitted.id)] == before
    assert submitted_runs(crashed) == submitted_runs(unsubmitted) == []


def test_lost_job_at_its_last_attempt_fails_with_crashed(rt):
    job = new_job(rt)
    run = ended_run(job, Scheduled())
    set_row(rt, job.id, "flow_run_id = %s, attempt = %s", str(run.id),
            rt.settings.max_resume_attempts)  # fmt: skip
    with get_client(sync_client=True) as client:
        client.delete_flow_run(run.id)
    assert reconcile_flow()["failed"] == 1
    failed = rt.jobs.get(job.id)
    assert (failed.status, failed.error_code) == ("failed", "crashed")
    assert submitted_runs(job) == []


def test_streamed_job_ends_interrupted_once_its_process_session_ends(rt):
    owner = psycopg.connect(rt.url, autocommit=True)  # the API process's lease connection
    owner.execute("SELECT pg_advisory_lock(%s::int, 4242)", (NAMESPACE,))
    with pooled(rt.url) as conn, conn.cursor(row_factory=class_row(Job)) as cur:
        job = insert_job(cur, "user-1", "tags", "csv", "stream", {"module": "tags"}, None, 4242)
    set_row(rt, job.id, "status = 'processing'")
    assert reconcile_flow()["interrupted"] == 0
    assert rt.jobs.get(job.id).status == "processing"
    owner.close()
    wait_for(lambda: lease_free(rt.url, 4242), "the session's lock to be freed", 10)
    assert cleanup_flow()["reconciled"]["interrupted"] == 1
    ended = rt.jobs.get(job.id)
    assert (ended.status, ended.error_code) == ("failed", "interrupted")


def alerts_since(since: datetime) -> list[dict]:
    """Failure-rate events the server has stored since `since`, oldest first."""
    body = {
        "filter": {"event": {"name": [ALERT]}, "occurred": {"since": since.isoformat()}},
        "limit": 50,
    }
    with get_client(sync_client=True) as client:
        response = client._client.post("/events/filter", json=body)
    response.raise_for_status()
    return sorted(response.json()["events"], key=lambda e: e["occurred"])


def related_run(event: dict) -> str:
    ids = [r["prefect.resource.id"] for r in event["related"]]
    return next(i.split(".", 2)[2] for i in ids if i.startswith("prefect.flow-run."))


def test_failure_rate_alert_only_above_the_threshold(rt, caplog, monkeypatch):
    for _ in range(3):
        job = new_job(rt)
        rt.jobs.finish(job.id, "failed", "source_error", "boom")
    failed, finished = rt.jobs.failure_rate(60)
    rate = failed / finished
    since = datetime.now(UTC)

    monkeypatch.setattr(rt.settings, "failure_rate_alert", 1.0)
    quiet = cleanup_flow(return_state=True)
    assert quiet.result()["failure_rate"] == rate
    assert not [r for r in caplog.records if "export failure rate" in r.getMessage()]

    monkeypatch.setattr(rt.settings, "failure_rate_alert", rate / 2)
    loud = cleanup_flow(return_state=True)
    assert loud.result()["failure_rate"] == rate
    warnings = [r for r in caplog.records if "export failure rate" in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert f"({failed} of {finished})" in warnings[0].getMessage()
    # Events reach the server asynchronously, in the order they were emitted: once the
    # loud run's event is stored, any event of the quiet run would be too.
    loud_id = str(loud.state_details.flow_run_id)
    events = wait_for(
        lambda: [e for e in alerts_since(since) if related_run(e) == loud_id], "the alert", 15
    )
    assert [e["payload"] for e in events] == [
        {"failed": failed, "finished": finished, "rate": rate}
    ]
    quiet_id = str(quiet.state_details.flow_run_id)
    assert [related_run(e) for e in alerts_since(since)] == [loud_id]
    assert quiet_id != loud_id
