"""One error shape: the ExportflowError family, FastAPI's validation, unknown routes, bugs."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from api.errors import FileGone, Gone, InvalidLink, NotReady, PrefectUnavailable
from flows.control import errors

SECRET_DETAIL = "host=10.0.0.7 password=hunter2"

CASES = [
    (errors.InvalidRequest("columns: bad"), 422, "invalid_request"),
    (errors.ColumnNotAllowed("column 'x' is not allowed"), 422, "column_not_allowed"),
    (errors.TooManyIds("too many"), 422, "too_many_ids"),
    (errors.UnknownModule("unknown module 'x'"), 404, "unknown_module"),
    (errors.PermissionDenied("no tags:read"), 403, "permission_denied"),
    (errors.JobNotFound("no export job 1"), 404, "job_not_found"),
    (NotReady("still running"), 409, "not_ready"),
    (InvalidLink("altered"), 403, "invalid_link"),
    (Gone("expired"), 410, "link_expired"),
    (FileGone("expired"), 410, "file_expired"),
    (errors.SourceError("the query was refused"), 500, "source_error"),
    (errors.StorageError("refused"), 500, "storage_error"),
    (errors.SourceTimeout("took longer than 30 s"), 504, "timeout"),
]


def raising(exc: BaseException) -> APIRouter:
    router = APIRouter()

    @router.get("/boom")
    def boom():
        raise exc

    @router.get("/typed/{n}")
    def typed(n: int, limit: int = 10):
        return {"n": n}

    return router


@pytest.fixture
def client_for(create_app, api_settings, rt):
    def make(exc: BaseException) -> TestClient:
        app = create_app(api_settings, rt=rt)
        app.include_router(raising(exc))
        return TestClient(app, raise_server_exceptions=False)

    return make


def body(resp) -> dict:
    data = resp.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message", "details"}
    return data["error"]


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=lambda v: str(v))
def test_exportflow_errors_map_by_class(client_for, exc, status, code):
    exc.detail = SECRET_DETAIL
    resp = client_for(exc).get("/boom")
    assert resp.status_code == status
    err = body(resp)
    assert err["code"] == code
    assert err["message"] == exc.message
    assert "hunter2" not in resp.text


@pytest.mark.parametrize(
    ("exc", "part"),
    [
        (errors.SourceUnavailable("the database could not be reached"), "database"),
        (errors.StorageUnavailable("storage timed out"), "storage"),
        (PrefectUnavailable("no"), "orchestrator"),
    ],
)
def test_unavailable_parts_are_503_naming_the_part(client_for, exc, part):
    exc.detail = SECRET_DETAIL
    resp = client_for(exc).get("/boom")
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    err = body(resp)
    assert err["details"] == {"part": part}
    assert part in err["message"] and "hunter2" not in resp.text


def test_config_error_is_500_without_internals(client_for):
    resp = client_for(errors.ConfigError("EXPORTFLOW_S3_SECRET_KEY=abc is wrong")).get("/boom")
    assert resp.status_code == 500
    err = body(resp)
    assert err["code"] == "config_error"
    assert "EXPORTFLOW" not in resp.text and "abc" not in resp.text


def test_a_bug_is_500_internal_without_traceback(client_for):
    resp = client_for(KeyError("secret_column_name")).get("/boom", headers={"X-Request-ID": "b-1"})
    assert resp.status_code == 500
    # The operator finds the traceback in the logs by the id the client saw.
    assert resp.headers["X-Request-ID"] == "b-1"
    err = body(resp)
    assert err["code"] == "internal"
    assert "secret_column_name" not in resp.text and "Traceback" not in resp.text


def test_validation_errors_name_the_field(client_for):
    resp = client_for(ValueError()).get("/typed/x?limit=many")
    assert resp.status_code == 422
    err = body(resp)
    assert err["code"] == "invalid_request"
    fields = {f["field"] for f in err["details"]["fields"]}
    assert fields == {"path.n", "query.limit"}
    assert err["message"].startswith("path.n:")


def test_unknown_route_and_method_have_the_same_shape(client):
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and body(resp)["code"] == "not_found"
    resp = client.put("/healthz")
    assert resp.status_code == 405 and body(resp)["code"] == "method_not_allowed"
