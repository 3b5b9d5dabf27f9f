"""The bound on request bodies, over a real HTTP server: a declared or a chunked body over
`max_body_bytes` is a 413 `body_too_large` that says what to do, and no export is started."""

from __future__ import annotations

import csv
import io
import json
import socket

import httpx
import psycopg
import pytest

from tests.api.conftest import LoopbackServer

LIMIT = 4096
PERMS = ("products:read",)
SMALL = {"scope": "selected", "selectedIds": [1, 2, 3]}
# Well past the limit, as a client that lists every row it holds would send.
LARGE = {"scope": "selected", "selectedIds": list(range(1, 3000))}


@pytest.fixture
def api_settings(api_settings):
    return api_settings.model_copy(update={"max_body_bytes": LIMIT})


@pytest.fixture
def server(create_app, api_settings, rt):
    """The app as api.main builds it, with the limit registered as create_app does."""
    with LoopbackServer(create_app(api_settings, rt=rt)) as srv:
        yield srv


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, *PERMS)}"}


def jobs_of(db_url: str, user: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT strategy, status FROM export_jobs WHERE user_id = %s", (user,)
        ).fetchall()


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert error["code"] == "body_too_large"
    assert "limit of 4 KiB" in error["message"]
    assert "select fewer ids" in error["message"] and "filter" in error["message"]
    assert error["details"] == {"maxBytes": LIMIT}
    assert resp.headers["connection"] == "close"


def exported_ids(resp: httpx.Response) -> list[str]:
    """The ID column of the CSV the response carries."""
    header, *rows = csv.reader(io.StringIO(resp.text))
    assert header[0] == "ID"
    return [row[0] for row in rows]


def chunks(body: dict, size: int = 512):
    """The body in pieces, so that httpx sends it chunked, with no Content-Length."""
    data = json.dumps(body).encode()
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_under_the_limit_is_exported(server, headers, user, api_settings):
    resp = httpx.post(f"{server.url}/api/products/export", json=SMALL, headers=headers)
    assert resp.status_code == 200, resp.text
    assert exported_ids(resp) == ["1", "2", "3"]
    assert jobs_of(api_settings.database_url, user) == [("direct", "completed")]


def test_a_declared_length_over_the_limit_is_a_413_and_no_job(server, headers, user, api_settings):
    resp = httpx.post(f"{server.url}/api/products/export", json=LARGE, headers=headers)
    assert int(resp.request.headers["content-length"]) > LIMIT
    assert_refused(resp)
    assert jobs_of(api_settings.database_url, user) == []


def test_a_declared_length_is_refused_before_the_body_is_sent(server, token, user):
    head = (
        "POST /api/products/export HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token(user, *PERMS)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())  # a terabyte announced, not one byte of it sent
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = sock.recv(4096)
            assert part, f"the server closed without an answer: {answer!r}"
            answer += part
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_chunked_body_over_the_limit_is_a_413_and_no_job(server, headers, user, api_settings):
    headers = {**headers, "Content-Type": "application/json"}
    resp = httpx.post(f"{server.url}/api/products/export", content=chunks(LARGE), headers=headers)
    assert resp.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in resp.request.headers
    assert_refused(resp)
    assert jobs_of(api_settings.database_url, user) == []


def test_a_chunked_body_under_the_limit_is_exported(server, headers, user, api_settings):
    headers = {**headers, "Content-Type": "application/json"}
    resp = httpx.post(
        f"{server.url}/api/products/export", content=chunks(SMALL, 8), headers=headers
    )
    assert resp.request.headers["transfer-encoding"] == "chunked"
    assert resp.status_code == 200, resp.text
    assert exported_ids(resp) == ["1", "2", "3"]
    assert jobs_of(api_settings.database_url, user) == [("direct", "completed")]
