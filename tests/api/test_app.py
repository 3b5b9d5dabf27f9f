"""The app factory's start-up checks, CORS, and the health endpoints."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from flows.control.errors import ConfigError
from flows.control.settings import DEFAULT_SECRET
from tests.api.conftest import make_runtime
from tests.e2e.conftest import free_port


def test_production_refuses_the_default_secret(create_app, api_settings):
    settings = api_settings.model_copy(update={"secret_key": SecretStr(DEFAULT_SECRET)})
    with pytest.raises(ConfigError, match="EXPORTFLOW_SECRET_KEY"):
        create_app(settings)


def test_development_allows_the_default_secret(create_app, api_settings, rt):
    settings = api_settings.model_copy(
        update={"secret_key": SecretStr(DEFAULT_SECRET), "env": "development", "jwt_secret": None}
    )
    with TestClient(create_app(settings, rt=rt)) as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_lifespan_builds_the_runtime_from_settings(create_app, api_settings):
    with TestClient(create_app(api_settings)) as c:
        assert c.app.state.services.jobs.url == api_settings.database_url
        assert "tags" in c.app.state.services.rt.registry.modules


def test_page_index_and_health_need_no_token(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    script = client.get("/app.js").headers["content-type"]
    assert script.startswith(("text/javascript", "application/javascript"))
    assert client.get("/api").json()["service"] == "exportflow"
    assert client.get("/api").json()["page"] == "/"
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unknown_paths_keep_the_json_error_shape(client):
    # The page is mounted at /, so an unknown path reaches it: still the API's error body.
    for path in ("/nothing-here.js", "/api/nothing-here"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"
    resp = client.post("/api/nothing-here", json={})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    # A path the API owns keeps its 405 and its own Allow header: the page stays behind it.
    resp = client.get("/api/tags/export")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_ready_when_every_part_answers(client, harness):
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["parts"] == {"database": "ok", "storage": "ok", "orchestrator": "ok"}


def _parts(resp) -> dict:
    assert resp.status_code == 503, resp.text
    err = resp.json()["error"]
    assert err["code"] == "not_ready"
    return err["details"]["parts"]


def test_not_ready_names_the_database(create_app, api_settings, registry, harness):
    port = free_port()
    settings = api_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{port}/nothing"}
    )
    with TestClient(create_app(settings, rt=make_runtime(settings, registry))) as c:
        resp = c.get("/readyz")
    parts = _parts(resp)
    assert parts["database"] != "ok" and parts["storage"] == "ok"
    assert "database" in resp.json()["error"]["message"]
    assert str(port) not in resp.text


def test_not_ready_names_storage_and_orchestrator(create_app, api_settings, registry):
    # An S3 store and a Prefect API on ports nothing listens on.
    down = api_settings.model_copy(
        update={
            "storage_url": "s3://bucket/prefix",
            "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
            "s3_access_key": "key",
            "s3_secret_key": SecretStr("secret"),
        }
    )
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        app = create_app(down, rt=make_runtime(down, registry))
    with TestClient(app) as c:
        resp = c.get("/readyz")
    parts = _parts(resp)
    assert parts["database"] == "ok"
    assert parts["storage"] != "ok" and parts["orchestrator"] != "ok"
    assert "storage, orchestrator" in resp.json()["error"]["message"]


def test_cors_exposes_content_disposition(create_app, api_settings, rt):
    settings = api_settings.model_copy(update={"cors_origins": ["https://app.example"]})
    with TestClient(create_app(settings, rt=rt)) as c:
        pre = c.options(
            "/api/exports",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        got = c.get("/healthz", headers={"Origin": "https://app.example"})
        assert "content-disposition" in got.headers["access-control-expose-headers"].lower()
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(client):
    got = client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in got.headers


def test_no_prefect_api_configured_is_not_ready_and_starts_no_server(create_app, api_settings, rt):
    with temporary_settings(updates={PREFECT_API_URL: None}):
        app = create_app(api_settings, rt=rt)
    with TestClient(app) as c:
        parts = _parts(c.get("/readyz"))
    assert parts["orchestrator"] == "failed (PrefectUnavailable)"
