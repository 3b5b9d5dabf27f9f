"""POST /api/{module}/export with `notify`: refused with a stable code and nothing created
when it cannot be honoured; otherwise always a background job, whatever its size."""

from __future__ import annotations

import time

import jwt
import psycopg
import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from flows.control.webhooks import SIGNATURE_HEADER, verify
from flows.orchestration.export_flow import export_flow
from tests.api.conftest import JWT_SECRET
from tests.e2e.conftest import wait_for
from tests.flows.helpers import new_job

PERMS = ["products:read"]
ONE_ROW = {"scope": "selected", "selectedIds": [1]}


@pytest.fixture
def api_settings(api_settings):
    return api_settings.model_copy(
        update={
            "rate_limit_per_hour": 1000,
            "smtp_host": "127.0.0.1",
            "webhook_allowed_hosts": ["hooks.example.com", "*.example.org"],
        }
    )


@pytest.fixture
def deployment(harness):
    """The export deployment the submission names; nothing runs its flow runs here."""
    export_flow.to_deployment(name="export").apply()


def bearer(user: str, **claims) -> dict[str, str]:
    now = int(time.time())
    body = {"sub": user, "permissions": PERMS, "iat": now, "exp": now + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(body, JWT_SECRET, algorithm='HS256')}"}


def rows_of(api_settings, user: str) -> list[tuple]:
    with psycopg.connect(api_settings.database_url) as conn:
        return conn.execute(
            "SELECT strategy, options, notifications FROM export_jobs WHERE user_id = %s",
            (user,),
        ).fetchall()


@pytest.mark.parametrize(
    ("notify", "claims", "code", "says"),
    [
        ({"email": True}, {}, "notify_email_unavailable", "no usable `email` claim"),
        ({"email": True}, {"email": "a@b.c", "email_verified": False},
         "notify_email_unavailable", "`email` claim"),
        ({"email": True}, {"email": "a@b.c\r\nBcc: x@y.z"}, "notify_email_unavailable", "email"),
        ({"webhook": "https://evil.com/h"}, {}, "webhook_host_not_allowed", "ALLOWED_HOSTS"),
        ({"webhook": "http://hooks.example.com/h"}, {}, "invalid_webhook_url", "https://"),
        ({"webhook": "https://u:p@hooks.example.com/h"}, {}, "invalid_webhook_url", "password"),
        ({}, {}, "invalid_notify", "asks for nothing"),
        ({"email": False}, {}, "invalid_notify", "asks for nothing"),
    ],
)  # fmt: skip
def test_bad_notify_is_a_422_with_its_code_and_creates_nothing(
    client, api_settings, user, notify, claims, code, says
):
    resp = client.post(
        "/api/products/export", json={**ONE_ROW, "notify": notify}, headers=bearer(user, **claims)
    )
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and says in error["message"]
    assert rows_of(api_settings, user) == []


def test_email_without_an_smtp_server_is_refused(create_app, api_settings, rt, user):
    from fastapi.testclient import TestClient

    app = create_app(api_settings.model_copy(update={"smtp_host": None}), rt=rt)
    with TestClient(app) as client:
        resp = client.post(
            "/api/products/export",
            json={**ONE_ROW, "notify": {"email": True}},
            headers=bearer(user, email="ann@example.com"),
        )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "notify_email_unavailable"
    assert "no SMTP server" in resp.json()["error"]["message"]


def test_a_client_cannot_choose_the_address(client, api_settings, user):
    body = {**ONE_ROW, "notify": {"email": True, "address": "victim@example.com"}}
    resp = client.post("/api/products/export", json=body, headers=bearer(user, email="a@b.co"))
    assert resp.status_code == 422 and "body.notify.address" in resp.json()["error"]["message"]
    assert rows_of(api_settings, user) == []


def test_one_row_with_notify_is_a_background_job_to_the_tokens_address(
    client, api_settings, user, deployment
):
    notify = {"email": True, "webhook": "https://a.example.org/hook"}
    headers = bearer(user, email="ann@example.com")
    preview = client.post(
        "/api/products/export/preview", json={**ONE_ROW, "notify": notify}, headers=headers
    )
    assert preview.json()["strategy"] == "background"
    resp = client.post("/api/products/export", json={**ONE_ROW, "notify": notify}, headers=headers)
    assert resp.status_code == 202, resp.text
    [(strategy, options, notifications)] = rows_of(api_settings, user)
    assert strategy == "background" and notifications == []
    assert options["notify"] == {**notify, "address": "ann@example.com"}
    status = client.get(resp.headers["Location"].removeprefix("http://testserver"), headers=headers)
    assert status.json()["notifications"] == [
        {"channel": c, "status": "pending", "attempts": 0, "lastError": None, "lastAttemptAt": None}
        for c in ("email", "webhook")
    ]
    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(_run_id(api_settings, user))
    assert run.parameters["job_id"] == status.json()["id"]


def _run_id(api_settings, user: str):
    with psycopg.connect(api_settings.database_url) as conn:
        return conn.execute(
            "SELECT flow_run_id FROM export_jobs WHERE user_id = %s", (user,)
        ).fetchone()[0]


def test_an_export_cancelled_before_its_run_started_notifies_its_webhook(
    client, api_settings, rt, user, ca_file, webhook_receiver, monkeypatch
):
    # No run will ever end this job, so the API itself tells the owner.
    for name, value in {
        "webhook_allowed_hosts": ["localhost"],
        "webhook_allow_private_addresses": True,
        "webhook_secret": SecretStr("whsec-api-test"),
        "notify_ca_file": ca_file,
        "notify_retry_delays": [0.1],
    }.items():
        monkeypatch.setattr(rt.settings, name, value)
    job = new_job(rt, user, notify={"webhook": webhook_receiver.url()})
    resp = client.delete(f"/api/exports/{job.id}", headers=bearer(user))
    assert (resp.status_code, resp.json()["status"]) == (200, "cancelled"), resp.text
    wait_for("the webhook", lambda: webhook_receiver.received, timeout=10, every=0.05)
    [got] = webhook_receiver.received
    assert verify(got.body, got.headers[SIGNATURE_HEADER], "whsec-api-test")
    assert got.json()["event"] == "export.cancelled"
    assert got.json()["job"]["id"] == str(job.id)
    # Cancelling again ends nothing, so nothing is sent twice.
    assert client.delete(f"/api/exports/{job.id}", headers=bearer(user)).status_code == 200
    assert len(webhook_receiver.received) == 1
