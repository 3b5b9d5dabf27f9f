"""POST /api/dev/token: on a development machine a 12-hour token for every module; in
production the path does not exist and the document does not name it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def dev_client(create_app, api_settings, rt):
    settings = api_settings.model_copy(update={"env": "development"})
    with TestClient(create_app(settings, rt=rt), raise_server_exceptions=False) as c:
        yield c


def test_development_mints_a_12_hour_token_for_every_module(dev_client, registry):
    resp = dev_client.post("/api/dev/token")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user"] == "demo"
    assert body["permissions"] == sorted({m.permission for m in registry.modules.values()})
    left = datetime.fromisoformat(body["expiresAt"]) - datetime.now(UTC)
    assert timedelta(hours=12) - timedelta(seconds=5) < left <= timedelta(hours=12)
    headers = {"Authorization": f"Bearer {body['token']}"}
    listed = dev_client.get("/api/modules", headers=headers).json()["modules"]
    assert [m["name"] for m in listed] == list(registry.modules)
    assert "/api/dev/token" in dev_client.get("/openapi.json").json()["paths"]


def test_development_names_the_user_asked_for_and_refuses_a_bad_body(dev_client):
    named = dev_client.post("/api/dev/token", json={"user": "bob"})
    assert named.status_code == 200, named.text
    assert named.json()["user"] == "bob"
    headers = {"Authorization": f"Bearer {named.json()['token']}"}
    preview = dev_client.post("/api/tags/export/preview", json={}, headers=headers)
    assert preview.status_code == 200, preview.text
    for bad in ({"user": ""}, {"user": "bob", "role": "admin"}):
        resp = dev_client.post("/api/dev/token", json=bad)
        assert (resp.status_code, resp.json()["error"]["code"]) == (422, "invalid_request")


def test_production_has_no_token_endpoint(client):
    resp = client.post("/api/dev/token", json={"user": "demo"})
    assert resp.status_code == 404
    assert "/api/dev/token" not in client.get("/openapi.json").json()["paths"]
