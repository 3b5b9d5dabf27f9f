"""scheduled_export through Prefect's test harness: a firing starts the owner's background
job, a revoked permission stops the schedule, and the table rebuilds Prefect's copies."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from flows.control.errors import ScheduleNotFound, WebhookHostNotAllowed
from flows.datapath.access import Caller
from flows.datapath.request import ExportRequest
from flows.orchestration import prefect_schedules
from flows.orchestration.deployments import deployments
from flows.orchestration.export_flow import export_flow
from flows.orchestration.scheduled_flow import scheduled_export
from flows.orchestration.scheduling import create_schedule, delete_schedule, update_schedule
from tests.flows.helpers import stored

PRODUCTS = frozenset({"products:read"})


@pytest.fixture(scope="module")
def deployment_id(harness):
    """The export deployment a firing submits to, and the one schedules hang on."""
    export_flow.to_deployment(name="export").apply()
    return scheduled_export.to_deployment(name="scheduled-export").apply()


@pytest.fixture
def owner(rt, request) -> Caller:
    """A user of this test alone whose permissions were last seen with products:read."""
    user = f"owner-{request.node.name}-{id(request)}"
    rt.permissions.seen(user, PRODUCTS)
    return Caller(user, PRODUCTS)


def save(rt, owner, name="Nightly products", **request) -> object:
    req = ExportRequest(module="products", columns=["id", "sku"], **request)
    return create_schedule(rt, owner, name, "0 3 * * *", "UTC", req)


def mirror(deployment_id, schedule_id):
    with get_client(sync_client=True) as client:
        found = client.read_deployment_schedules(deployment_id)
    return next((s for s in found if s.slug == prefect_schedules.slug(schedule_id)), None)


def test_firing_starts_the_owners_job_whose_file_has_the_rows(rt, owner, deployment_id):
    schedule = save(rt, owner, filters=[{"column": "id", "op": "lte", "value": 700}])
    state = scheduled_export(str(schedule.id), return_state=True)
    assert state.is_completed(), state.message
    job = rt.jobs.get(state.result())
    assert (job.user_id, job.strategy, job.schedule_id, job.total_rows) == (
        owner.user_id, "background", schedule.id, 700,
    )  # fmt: skip
    assert job.flow_run_id is not None  # handed to the export deployment, like the API's
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == "Nightly products"
        assert client.read_flow_run(job.flow_run_id).parameters["job_id"] == str(job.id)
    assert export_flow(str(job.id), return_state=True).is_completed()
    done = rt.jobs.get(job.id)
    lines = stored(rt, done.file_key).decode().splitlines()
    assert lines[0] == "ID,SKU" and len(lines) == 701 and done.expires_at is not None


def test_revoked_permission_fails_the_run_and_stops_the_schedule(rt, owner, deployment_id):
    schedule = save(rt, owner)
    rt.permissions.seen(owner.user_id, frozenset({"tags:read"}))  # products:read taken away
    state = scheduled_export(str(schedule.id), return_state=True)
    assert state.is_failed() and "no longer holds 'products:read'" in state.message
    stopped = rt.schedules.get(schedule.id)
    assert (stopped.active, stopped.error_code) == (False, "permission_revoked")
    assert mirror(deployment_id, schedule.id).active is False
    (job,) = rt.jobs.list_owned(owner.user_id, 10)
    assert (job.status, job.error_code, job.schedule_id) == ("failed", "permission_revoked",
                                                             schedule.id)  # fmt: skip
    # Resumed by its owner once the permission is back: active again, the error cleared.
    resumed = update_schedule(rt, owner, str(schedule.id), {"active": True})
    assert (resumed.active, resumed.error_code) == (True, None)
    assert mirror(deployment_id, schedule.id).active is True


def test_a_paused_or_deleted_schedules_leftover_run_starts_nothing(rt, owner, deployment_id):
    schedule = save(rt, owner)
    update_schedule(rt, owner, str(schedule.id), {"active": False})
    assert scheduled_export(str(schedule.id)) is None
    delete_schedule(rt, owner, str(schedule.id))
    assert scheduled_export(str(schedule.id)) is None
    assert rt.jobs.list_owned(owner.user_id, 10) == []
    with pytest.raises(ScheduleNotFound):
        delete_schedule(rt, owner, str(schedule.id))


def test_reapplying_the_deployments_keeps_schedules_and_sync_restores_lost_ones(
    rt, owner, deployment_id, settings
):
    kept, lost = save(rt, owner, "kept"), save(rt, owner, "lost")
    update_schedule(rt, owner, str(kept.id), {"active": False})
    # What a restart of `exportflow serve` does: every deployment applied again.
    for d in deployments(settings):
        d.apply()
    assert mirror(deployment_id, kept.id).active is False
    with get_client(sync_client=True) as client:
        client.delete_deployment_schedule(deployment_id, mirror(deployment_id, lost.id).id)
        stray = prefect_schedules.slug("00000000-0000-0000-0000-000000000000")
        client.create_deployment_schedules(deployment_id, [
            prefect_schedules.DeploymentScheduleCreate(
                schedule=prefect_schedules.cron_schedule("0 1 * * *", "UTC"), slug=stray)
        ])  # fmt: skip
        counts = prefect_schedules.sync(client, rt.schedules.all())
    assert counts["created"] >= 1 and counts["deleted"] >= 1
    restored = mirror(deployment_id, lost.id)
    assert (restored.active, restored.schedule.cron) == (True, "0 3 * * *")
    assert restored.parameters == {"schedule_id": str(lost.id)}
    assert mirror(deployment_id, kept.id).active is False
    assert mirror(deployment_id, "00000000-0000-0000-0000-000000000000") is None
    with get_client(sync_client=True) as client:  # a second pass has nothing to do
        assert prefect_schedules.sync(client, rt.schedules.all()) == dict.fromkeys(
            ("created", "updated", "deleted"), 0
        )


def test_a_schedules_notify_is_checked_when_saved_and_rides_on_each_job(
    rt, owner, deployment_id, monkeypatch
):
    monkeypatch.setattr(rt.settings, "webhook_allowed_hosts", ["hooks.example.com"])
    req = ExportRequest(module="products", columns=["id"])
    hook = {"webhook": "https://hooks.example.com/done"}
    schedule = create_schedule(rt, owner, "Hooked", "0 3 * * *", "UTC", req, hook)
    state = scheduled_export(str(schedule.id), return_state=True)
    job = rt.jobs.get(state.result())
    assert job.options["notify"] == {"email": False, "webhook": hook["webhook"], "address": None}
    with pytest.raises(WebhookHostNotAllowed):
        create_schedule(rt, owner, "Elsewhere", "0 3 * * *", "UTC", req,
                        {"webhook": "https://elsewhere.example.org/x"})  # fmt: skip
