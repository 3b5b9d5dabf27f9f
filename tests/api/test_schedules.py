"""/api/schedules against the test database and Prefect's test server: each saved schedule
is a schedule of the `scheduled-export` deployment, paused, resumed and deleted with it."""

from __future__ import annotations

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

from flows.orchestration.export_flow import export_flow
from flows.orchestration.prefect_schedules import slug
from flows.orchestration.scheduled_flow import scheduled_export

PERMS = ("products:read",)
BODY = {
    "name": "Cheap products",
    "module": "products",
    "cron": "0 6 * * 1-5",
    "timezone": "Europe/Berlin",
    "export": {"selectedColumns": ["id", "sku"], "filters": [{"column": "id", "op": "lte",
                                                              "value": 50}]},
    "notify": {"webhook": "https://hooks.example.com/exports"},
}  # fmt: skip


@pytest.fixture
def api_settings(api_settings):
    """Two schedules per user, so that the cap is reached quickly; one webhook host."""
    allowed = {"max_schedules_per_user": 2, "webhook_allowed_hosts": ["hooks.example.com"]}
    return api_settings.model_copy(update=allowed)


@pytest.fixture(scope="module")
def deployment_id(harness):
    """The deployments a schedule and its runs name (nothing serves them here)."""
    export_flow.to_deployment(name="export").apply()
    return scheduled_export.to_deployment(name="scheduled-export").apply()


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, *PERMS)}"}


def mirrors(deployment_id) -> dict:
    """Prefect's schedules of the deployment, by slug."""
    with get_client(sync_client=True) as client:
        return {s.slug: s for s in client.read_deployment_schedules(deployment_id)}


def scheduled_runs(deployment_id, schedule_id) -> list:
    """Runs Prefect has planned for the schedule and not started."""
    only = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=only)
    return [
        r for r in runs
        if r.parameters.get("schedule_id") == schedule_id and r.state and r.state.is_scheduled()
    ]  # fmt: skip


def rows(db_url, user) -> int:
    with psycopg.connect(db_url) as conn:
        sql = "SELECT count(*) FROM export_schedules WHERE user_id = %s"
        return conn.execute(sql, (user,)).fetchone()[0]


def test_save_list_pause_resume_delete_mirrored_in_prefect(client, headers, deployment_id):
    made = client.post("/api/schedules", json=BODY, headers=headers)
    assert made.status_code == 201, made.text
    view = made.json()
    sid = view["id"]
    assert (view["name"], view["cron"], view["timezone"], view["active"]) == (
        "Cheap products", "0 6 * * 1-5", "Europe/Berlin", True,
    )  # fmt: skip
    assert view["request"]["columns"] == ["id", "sku"] and view["nextRunAt"].endswith("+01:00")
    # The export's notify rules, checked when the schedule is saved; its runs forward it.
    assert view["notify"]["webhook"] == BODY["notify"]["webhook"] and view["error"] is None
    mirror = mirrors(deployment_id)[slug(sid)]
    assert (mirror.schedule.cron, mirror.schedule.timezone, mirror.active) == (
        "0 6 * * 1-5", "Europe/Berlin", True,
    )  # fmt: skip
    assert mirror.parameters == {"schedule_id": sid}
    assert [s["id"] for s in client.get("/api/schedules", headers=headers).json()["items"]] == [sid]
    assert client.get(f"/api/schedules/{sid}", headers=headers).json() == view

    paused = client.patch(f"/api/schedules/{sid}", json={"active": False}, headers=headers)
    assert paused.status_code == 200 and paused.json()["active"] is False
    assert paused.json()["nextRunAt"] is None
    assert mirrors(deployment_id)[slug(sid)].active is False
    assert scheduled_runs(deployment_id, sid) == []

    body = {"active": True, "name": "Renamed", "cron": "30 7 * * *"}
    resumed = client.patch(f"/api/schedules/{sid}", json=body, headers=headers).json()
    assert (resumed["active"], resumed["name"], resumed["cron"]) == (True, "Renamed", "30 7 * * *")
    mirror = mirrors(deployment_id)[slug(sid)]
    assert (mirror.active, mirror.schedule.cron) == (True, "30 7 * * *")

    assert client.delete(f"/api/schedules/{sid}", headers=headers).status_code == 204
    assert slug(sid) not in mirrors(deployment_id)
    gone = client.get(f"/api/schedules/{sid}", headers=headers)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "schedule_not_found")


def test_another_users_schedule_is_not_found(client, headers, token, deployment_id):
    sid = client.post("/api/schedules", json=BODY, headers=headers).json()["id"]
    bob = {"Authorization": f"Bearer {token('bob-' + sid, *PERMS)}"}
    for method, body in (("GET", None), ("PATCH", {"active": False}), ("DELETE", None)):
        answer = client.request(method, f"/api/schedules/{sid}", json=body, headers=bob)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "schedule_not_found")
    assert client.get("/api/schedules", headers=bob).json()["items"] == []
    assert mirrors(deployment_id)[slug(sid)].active is True


def test_cap_per_user(client, headers, user, db_url, deployment_id):
    for _ in range(2):
        assert client.post("/api/schedules", json=BODY, headers=headers).status_code == 201
    before = len(mirrors(deployment_id))
    third = client.post("/api/schedules", json=BODY, headers=headers)
    assert (third.status_code, third.json()["error"]["code"]) == (409, "too_many_schedules")
    assert "at most 2" in third.json()["error"]["message"]
    assert rows(db_url, user) == 2 and len(mirrors(deployment_id)) == before


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"cron": "* * *"}, 422, "invalid_cron"),
        ({"cron": "61 * * * *"}, 422, "invalid_cron"),
        ({"cron": "0 6 * * * 2030"}, 422, "invalid_cron"),
        ({"cron": "*/2 * * * *"}, 422, "cron_too_frequent"),
        ({"cron": "0,1 6 * * *"}, 422, "cron_too_frequent"),
        ({"timezone": "Mars/Olympus"}, 422, "invalid_timezone"),
        ({"name": ""}, 422, "invalid_request"),
        ({"module": "nope"}, 404, "unknown_module"),
        ({"module": "tags"}, 403, "permission_denied"),
        ({"export": {"selectedColumns": ["cost_price"]}}, 422, "column_not_allowed"),
        ({"export": {"format": "pdf"}}, 422, "invalid_request"),
        ({"every": "day"}, 422, "invalid_request"),
        ({"notify": {"to": "a\u0000b"}}, 422, "invalid_request"),
        ({"notify": {"email": "ops@example.com"}}, 422, "invalid_request"),
        (
            {"notify": {"webhook": "https://elsewhere.example.org/x"}},
            422,
            "webhook_host_not_allowed",
        ),
        ({"notify": {"email": False, "address": "boss@example.com"}}, 422, "invalid_request"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(
    client, headers, user, db_url, deployment_id, change, status, code
):
    before = len(mirrors(deployment_id))
    answer = client.post("/api/schedules", json={**BODY, **change}, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert answer.json()["error"]["message"]
    assert rows(db_url, user) == 0 and len(mirrors(deployment_id)) == before


def test_bad_change_leaves_the_schedule_as_it_was(client, headers, deployment_id):
    sid = client.post("/api/schedules", json=BODY, headers=headers).json()["id"]
    answer = client.patch(f"/api/schedules/{sid}", json={"cron": "* * * * *"}, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "cron_too_frequent")
    assert "every 5 minutes" in answer.json()["error"]["message"]
    assert client.get(f"/api/schedules/{sid}", headers=headers).json()["cron"] == BODY["cron"]
    assert mirrors(deployment_id)[slug(sid)].schedule.cron == BODY["cron"]


def test_each_call_records_the_callers_permissions(client, token, user, db_url):
    for perms in (("tags:read", "products:read"), ("tags:read",)):
        client.get("/api/schedules", headers={"Authorization": f"Bearer {token(user, *perms)}"})
        with psycopg.connect(db_url) as conn:
            sql = "SELECT permissions FROM user_permissions WHERE user_id = %s"
            assert conn.execute(sql, (user,)).fetchone()[0] == sorted(perms)


def test_scheduler_unreachable_is_503_and_creates_nothing(client, headers, user, db_url):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        answer = client.post("/api/schedules", json=BODY, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "orchestrator_unavailable")
    assert rows(db_url, user) == 0
