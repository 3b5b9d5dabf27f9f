"""The API's logs as an operator reads them on standard error: one JSON object per line,
each record of a request carrying its X-Request-ID (the caller's, or one made and echoed),
its user, and the module and job it concerns."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from fastapi.testclient import TestClient

PERMS = ("products:read",)


@pytest.fixture
def headers(token, user) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, *PERMS)}"}


def records(err: str) -> list[dict]:
    """The JSON records among the captured standard error."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def of_request(err: str, request_id: str) -> dict[str, dict]:
    """The records of one request, by logger."""
    return {r["logger"]: r for r in records(err) if r.get("requestId") == request_id}


def test_a_requests_id_is_echoed_and_on_every_record_of_that_request(client, headers, user, capsys):
    body = {"scope": "selected", "selectedIds": [1, 2, 3]}
    mine = {**headers, "X-Request-ID": "req-2024.06/abc"}
    response = client.post("/api/products/export", json=body, headers=mine)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-2024.06/abc"
    other = client.post("/api/products/export", json=body, headers=headers)
    generated = other.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    err = capsys.readouterr().err
    assert all(line.startswith("{") for line in err.splitlines())  # nothing but JSON lines
    logged = of_request(err, "req-2024.06/abc")
    assert set(logged) == {"exportflow.exports", "api.requests"}
    export = logged["exportflow.exports"]
    assert (export["userId"], export["module"], export["strategy"], export["status"]) == (
        user, "products", "direct", "completed"
    )  # fmt: skip
    assert (export["rowCount"], export["bytes"]) == (3, len(response.content))
    request = logged["api.requests"]
    assert (request["method"], request["path"], request["status"]) == (
        "POST", "/api/products/export", 200
    )  # fmt: skip
    assert (request["userId"], request["module"]) == (user, "products")
    assert request["durationMs"] >= 0
    # The other request's records carry its own id, not the first one's.
    assert of_request(err, generated)["exportflow.exports"]["jobId"] != export["jobId"]


def test_a_refused_request_is_logged_with_its_status_and_the_job_it_named(
    client, headers, user, capsys
):
    job_id = str(uuid.uuid4())
    mine = {**headers, "X-Request-ID": "lookup-1"}
    assert client.get(f"/api/exports/{job_id}", headers=mine).status_code == 404
    assert client.get("/api/exports", headers={"X-Request-ID": "anonymous-1"}).status_code == 401
    err = capsys.readouterr().err
    found = of_request(err, "lookup-1")["api.requests"]
    assert (found["status"], found["jobId"], found["userId"]) == (404, job_id, user)
    anonymous = of_request(err, "anonymous-1")["api.requests"]
    assert anonymous["status"] == 401 and "userId" not in anonymous


@pytest.mark.parametrize(
    "given", ["two words", "x" * 129, "ünïcode".encode(), "a\tb", '{"json": 1}']
)
def test_a_request_id_that_is_not_plainly_an_id_is_replaced(client, given, capsys):
    response = client.get("/api/exports", headers={"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert of_request(capsys.readouterr().err, response.headers["X-Request-ID"])


def test_text_logs_for_a_person_carry_the_same_fields(
    create_app, api_settings, rt, headers, capsys
):
    settings = api_settings.model_copy(update={"log_format": "text"})
    with TestClient(create_app(settings, rt=rt)) as client:
        client.get("/api/exports", headers={**headers, "X-Request-ID": "text-1"})
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "text-1" in line]
    assert not line.startswith("{")
    assert re.search(r" INFO api\.requests: GET /api/exports 200 in \d+ ms requestId=text-1 ", line)


def test_a_streamed_exports_record_carries_its_request_id(
    create_app, api_settings, rt, headers, capsys
):
    # Streamed exports are written by a thread of their own; its records are the request's.
    settings = api_settings.model_copy(update={"direct_max_rows": 10})
    body = {"filters": [{"column": "id", "op": "lte", "value": "11"}]}
    mine = {**headers, "X-Request-ID": "stream-1"}
    with TestClient(create_app(settings, rt=rt)) as client:
        response = client.post("/api/products/export", json=body, headers=mine)
    assert response.status_code == 200 and "content-length" not in response.headers
    export = of_request(capsys.readouterr().err, "stream-1")["exportflow.exports"]
    assert (export["strategy"], export["status"], export["rowCount"]) == ("stream", "completed", 11)
