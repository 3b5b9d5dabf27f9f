"""GET/DELETE /api/exports/{id}, its alias, and the paginated list, on real job rows."""

from __future__ import annotations

import time
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Pending, Running, Scheduled

from api.runs import STALE_FACTOR
from flows.control.database import pg_connect
from tests.api.conftest import completed_job, new_job, user_id
from tests.e2e.conftest import wait_for

DATA = b"id,name\r\n1,a\r\n2,b\r\n3,c\r\n"


@pytest.fixture
def user(auth):
    """A fresh user and their Authorization header."""
    uid = user_id()
    return uid, auth(uid)


def test_status_of_a_pending_job(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid)
    resp = client.get(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == str(job.id) and body["module"] == "tags"
    assert body["status"] == "pending" and body["stateName"] is None
    assert body["processedRows"] == 0 and body["progress"] == 0.0
    assert body["fileUrl"] is None and body["error"] is None
    assert {"createdAt", "startedAt", "finishedAt", "expiresAt", "etaSeconds"} <= set(body)


def test_status_of_a_processing_job_has_progress_rate_and_eta(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid)
    rt.jobs.claim(job.id, job.attempt, None)
    rt.jobs.set_total(job.id, job.attempt, 400)
    rt.jobs.progress(job.id, job.attempt, 100, {})
    body = client.get(f"/api/exports/{job.id}", headers=headers).json()
    assert body["status"] == "processing"
    assert body["progress"] == 0.25 and body["totalRows"] == 400
    assert body["rowsPerSecond"] > 0 and body["etaSeconds"] >= 0


def test_status_of_a_completed_job_links_its_download(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    body = client.get(f"/api/exports/{job.id}", headers=headers).json()
    assert body["status"] == "completed" and body["progress"] == 1.0
    assert body["fileUrl"] == f"http://testserver/api/exports/{job.id}/download"
    assert body["fileBytes"] == len(DATA) and len(body["sha256"]) == 64


def test_failed_job_reports_its_error(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid)
    rt.jobs.finish(job.id, "failed", "timeout", "a read ran past the statement timeout")
    body = client.get(f"/api/exports/{job.id}", headers=headers).json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "timeout", "message": "a read ran past the statement timeout"}


def test_another_users_job_is_not_found_like_a_missing_one(client, rt, auth):
    job = new_job(rt, user_id())
    theirs = client.get(f"/api/exports/{job.id}", headers=auth(user_id()))
    missing = client.get(f"/api/exports/{uuid.uuid4()}", headers=auth(user_id()))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "job_not_found"
    assert client.delete(f"/api/exports/{job.id}", headers=auth(user_id())).status_code == 404
    assert rt.jobs.get(job.id).status == "pending"


def test_a_malformed_id_is_422_naming_the_field(client, user):
    resp = client.get("/api/exports/not-a-uuid", headers=user[1])
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["fields"][0]["field"] == "path.job_id"


def test_module_alias_gives_the_same_body(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid, module="products")
    direct = client.get(f"/api/exports/{job.id}", headers=headers).json()
    alias = client.get(f"/api/products/export/status/{job.id}", headers=headers)
    assert alias.status_code == 200 and alias.json() == direct
    other = client.get(f"/api/tags/export/status/{job.id}", headers=headers)
    assert other.status_code == 404


def test_no_token_is_401(client, rt):
    job = new_job(rt, user_id())
    assert client.get(f"/api/exports/{job.id}").status_code == 401


# --- the list ---


def test_list_pages_newest_first_and_filters(client, rt, user):
    uid, headers = user
    jobs = [new_job(rt, uid, module="tags" if i % 2 else "products") for i in range(5)]
    rt.jobs.finish(jobs[0].id, "cancelled", "cancelled", "cancelled by request")
    new_job(rt, user_id())  # someone else's

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/exports", params=params, headers=headers).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [str(j.id) for j in reversed(jobs)]

    tags = client.get("/api/exports", params={"module": "tags"}, headers=headers).json()
    assert [i["module"] for i in tags["items"]] == ["tags", "tags"]
    pending = client.get("/api/exports", params={"status": "pending"}, headers=headers).json()
    assert len(pending["items"]) == 4
    both = {"status": ["pending", "cancelled"], "limit": 10}
    assert len(client.get("/api/exports", params=both, headers=headers).json()["items"]) == 5


def test_list_pages_through_equal_creation_times_exactly_once(client, rt, user):
    uid, headers = user
    jobs = [new_job(rt, uid) for _ in range(5)]
    with pg_connect(rt.jobs.url) as conn:  # one transaction's now(): ties broken by id
        conn.execute("UPDATE export_jobs SET created_at = now() WHERE user_id = %s", (uid,))
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/exports", params=params, headers=headers).json()
        seen += [item["id"] for item in page["items"]]
        if (cursor := page["nextCursor"]) is None:
            break
    assert sorted(seen) == sorted(str(j.id) for j in jobs)
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"status": "done"}, "query.status.0"),
        ({"module": "prod\x00ucts"}, "query.module"),  # was a 500 from the database
    ],
)
def test_list_bounds(client, user, params, field):
    resp = client.get("/api/exports", params=params, headers=user[1])
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["fields"][0]["field"] == field


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4IiwgInkiXQ"])
def test_list_refuses_a_cursor_it_did_not_give(client, user, cursor):
    resp = client.get("/api/exports", params={"cursor": cursor}, headers=user[1])
    assert resp.status_code == 422
    assert resp.json()["error"]["message"].startswith("cursor:")


# --- delete ---


def test_delete_a_job_without_a_run_cancels_it(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid)
    resp = client.delete(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    assert resp.json()["error"]["code"] == "cancelled"
    again = client.delete(f"/api/exports/{job.id}", headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_delete_a_completed_job_removes_its_file_and_expires_it(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    assert rt.storage.exists(job.file_key)
    resp = client.delete(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 200 and resp.json()["status"] == "expired"
    assert not rt.storage.exists(job.file_key)
    assert rt.jobs.get(job.id).status == "expired"
    assert client.delete(f"/api/exports/{job.id}", headers=headers).json()["status"] == "expired"
    download = client.get(f"/api/exports/{job.id}/download", headers=headers)
    assert download.status_code == 410


# --- with Prefect: the run's state, and cancelling it ---


@flow(name="api-test-export")
def stand_in(job_id: str, attempt: int = 0) -> None:
    """Only its runs are used: their states are set by hand."""


def with_run(rt, uid, state):
    """A job whose flow run (in the test server) is in `state`."""
    job = new_job(rt, uid)
    with get_client(sync_client=True) as c:
        run = c.create_flow_run(stand_in, parameters={"job_id": str(job.id)}, state=state)
    return rt.jobs.attach_run(job.id, job.attempt, run.id), run.id


def run_state(run_id):
    with get_client(sync_client=True) as c:
        return c.read_flow_run(run_id).state


def test_status_follows_the_flow_run(client, rt, user, harness):
    uid, headers = user
    job, _ = with_run(rt, uid, Running())
    body = client.get(f"/api/exports/{job.id}", headers=headers).json()
    assert (body["status"], body["stateName"]) == ("processing", "Running")


def test_a_state_change_shows_once_the_cached_state_is_a_second_old(client, rt, user, harness):
    uid, headers = user
    job, run_id = with_run(rt, uid, Pending())
    poll = lambda: client.get(f"/api/exports/{job.id}", headers=headers).json()["stateName"]  # noqa: E731
    assert poll() == "Pending"
    with get_client(sync_client=True) as c:
        c.set_flow_run_state(run_id, Running(), force=True)
    # Several polls a second cost one read of Prefect; the row's progress is read each time.
    assert poll() == "Pending"
    time.sleep(client.app.state.services.settings.run_state_cache_seconds)
    # The first poll after that answers from the cache at once and reads Prefect behind it.
    assert poll() == "Pending"
    wait_for("the new state", lambda: poll() == "Running", timeout=5, every=0.05)


def test_a_state_older_than_its_stale_limit_is_read_before_answering(
    create_app, api_settings, rt, user, harness
):
    from fastapi.testclient import TestClient

    uid, headers = user
    job, run_id = with_run(rt, uid, Pending())
    settings = api_settings.model_copy(update={"run_state_cache_seconds": 0.05})
    with TestClient(create_app(settings, rt=rt)) as c:
        poll = lambda: c.get(f"/api/exports/{job.id}", headers=headers).json()["stateName"]  # noqa: E731
        assert poll() == "Pending"
        with get_client(sync_client=True) as pc:
            pc.set_flow_run_state(run_id, Running(), force=True)
        time.sleep(0.05 * STALE_FACTOR)
        assert poll() == "Running"


def test_prefect_unreachable_reports_the_row(create_app, api_settings, rt, user, harness):
    from fastapi.testclient import TestClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.e2e.conftest import free_port

    uid, headers = user
    job, _ = with_run(rt, uid, Running())
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        app = create_app(api_settings, rt=rt)
    with TestClient(app) as c:
        resp = c.get(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 200
    assert (resp.json()["status"], resp.json()["stateName"]) == ("pending", None)


def test_delete_a_running_job_sets_its_run_cancelling(client, rt, user, harness):
    uid, headers = user
    job, run_id = with_run(rt, uid, Running())
    resp = client.delete(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["stateName"]) == ("cancelled", "Cancelling")
    assert run_state(run_id).type.value == "CANCELLING"
    # The flow's hook ends the job; until then the row is active and a repeat is harmless.
    assert rt.jobs.get(job.id).status == "pending"
    assert client.delete(f"/api/exports/{job.id}", headers=headers).status_code == 202


def test_delete_a_scheduled_job_cancels_run_and_job(client, rt, user, harness):
    uid, headers = user
    job, run_id = with_run(rt, uid, Scheduled())
    resp = client.delete(f"/api/exports/{job.id}", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    assert run_state(run_id).is_cancelled()
    assert rt.jobs.get(job.id).status == "cancelled"
