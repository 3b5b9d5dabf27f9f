"""Direct and streamed exports within their time limits: a real lock holds the export's reads
in PostgreSQL, past a one-second limit. Up to 10 rows direct, up to 100 streamed."""

from __future__ import annotations

import io
import time

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.options import ExportOptions, to_request
from api.strategies import END, QUEUE_CHUNKS, Pipe, deadline
from flows.control.errors import SourceTimeout
from flows.datapath.engine import export
from flows.datapath.request import plan_export
from tests.api.conftest import LoopbackServer
from tests.flows.helpers import TableLock, in_background, wait_for

PERMS = ("products:read",)
SMALL = {"direct_max_rows": 10, "stream_max_rows": 100, "rate_limit_per_hour": 1000}


def first(n: int) -> dict:
    """A body selecting products 1..n by a filter."""
    return {"filters": [{"column": "id", "op": "lte", "value": n}]}


def row_of(db_url: str, user: str) -> tuple:
    with psycopg.connect(db_url) as conn:
        [row] = conn.execute(
            "SELECT strategy, status, error_code, error FROM export_jobs WHERE user_id = %s",
            (user,),
        ).fetchall()
    return row


class LockedAfterCount:
    """Holds the user's admission lock, so that a request stops right after its count; once
    it waits there, the table is locked and admission let go: the export's reads wait."""

    def __init__(self, url: str, user: str) -> None:
        self.url, self.user, self.table = url, user, None
        self.admission = psycopg.connect(url, autocommit=True)
        self.admission.execute("SELECT pg_advisory_lock(hashtext(%s))", (user,))

    def waiting_for_admission(self) -> bool:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                ).fetchone()[0]
                > 0
            )

    def lock_table(self) -> float:
        """Lock the table once the request has counted, then admit it; the time it was let go."""
        wait_for(self.waiting_for_admission, "the request to wait for admission")
        self.table = TableLock(self.url)
        self.admission.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.user,))
        return time.monotonic()

    def release(self) -> None:
        if self.table is not None:
            self.table.release()
        self.admission.close()


@pytest.fixture
def api_settings(api_settings):
    """Small strategy thresholds; limits shorter than the statement timeout, so that every
    read runs with its own bound."""
    update = {**SMALL, "direct_timeout_seconds": 10, "stream_timeout_seconds": 10}
    return api_settings.model_copy(update=update)


@pytest.fixture
def post(create_app, api_settings, rt, token, user):
    """`post(body, **settings)`: the export request on a real server, answered while the
    reads wait on the lock; returns what the client got, and when, after admission."""

    def run(body: dict, read, **update):
        settings = api_settings.model_copy(update=update)
        headers = {"Authorization": f"Bearer {token(user, *PERMS)}"}
        locked = LockedAfterCount(settings.database_url, user)
        try:
            with LoopbackServer(create_app(settings, rt=rt)) as server, httpx.Client() as c:
                url = f"{server.url}/api/products/export"
                answer = in_background(read, c, url, body, headers)
                admitted = locked.lock_table()
                got = answer.result(60)
                return got, time.monotonic() - admitted
        finally:
            locked.release()

    return run


def read_whole(client: httpx.Client, url: str, body: dict, headers: dict) -> httpx.Response:
    return client.post(url, json=body, headers=headers, timeout=60)


def read_stream(client: httpx.Client, url: str, body: dict, headers: dict):
    """(status, the transfer's error) of a streamed response read to its end."""
    with client.stream("POST", url, json=body, headers=headers, timeout=60) as resp:
        try:
            resp.read()
        except httpx.TransportError as exc:
            return resp.status_code, exc
        return resp.status_code, None


def test_direct_past_its_limit_answers_504_timeout(post, user, api_settings):
    resp, elapsed = post(first(5), read_whole, direct_timeout_seconds=1)
    assert resp.status_code == 504, resp.text
    message = (
        "the export took longer than the 1 s a direct export may take;"
        ' export fewer rows or ask for a background export ("mode": "background")'
    )
    assert resp.json() == {"error": {"code": "timeout", "message": message, "details": None}}
    # The limit, not the 300 s statement timeout, ended the reads waiting on the lock.
    assert 1 <= elapsed < 8
    assert row_of(api_settings.database_url, user) == ("direct", "failed", "timeout", message)


def test_stream_past_its_limit_is_cut_off(post, user, api_settings):
    (status, error), elapsed = post(first(50), read_stream, stream_timeout_seconds=1)
    # The headers were out before the reads waited: the transfer breaks, never a short file.
    assert status == 200
    assert isinstance(error, httpx.RemoteProtocolError)
    assert 1 <= elapsed < 8
    strategy, status, code, message = row_of(api_settings.database_url, user)
    assert (strategy, status, code) == ("stream", "failed", "timeout")
    assert message.startswith("the export took longer than the 1 s a streamed export may take")


def engine_bytes(body: dict, registry, settings) -> bytes:
    """What the engine writes for the same request, with no limit."""
    request = to_request("products", ExportOptions.model_validate(body))
    buf = io.BytesIO()
    export(settings.database_url, plan_export(request, registry, settings), buf, settings)
    return buf.getvalue()


def test_exports_within_their_limits_are_unaffected(client, token, user, api_settings, registry):
    headers = {"Authorization": f"Bearer {token(user, *PERMS)}"}
    for n in (5, 50):
        resp = client.post("/api/products/export", json=first(n), headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.content == engine_bytes(first(n), registry, api_settings)
    with psycopg.connect(api_settings.database_url) as conn:
        rows = conn.execute(
            "SELECT strategy, status, processed_rows FROM export_jobs WHERE user_id = %s"
            " ORDER BY created_at",
            (user,),
        ).fetchall()
    assert rows == [("direct", "completed", 5), ("stream", "completed", 50)]


def test_a_client_that_stops_reading_times_the_stream_out():
    pipe = Pipe(deadline(0.3, "streamed"))
    for n in range(QUEUE_CHUNKS):
        pipe.write(b"chunk %d\n" % n)
    start = time.monotonic()
    with pytest.raises(SourceTimeout) as info:
        pipe.write(b"one too many\n")
    assert time.monotonic() - start >= 0.2
    assert pipe.timed_out is info.value and info.value.code == "timeout"
    assert "0.3 s a streamed export" in info.value.message


def test_a_finished_stream_is_drained_after_its_limit():
    pipe = Pipe(deadline(0.1, "streamed"))
    chunks = [b"chunk %d\n" % n for n in range(QUEUE_CHUNKS)]
    for chunk in chunks:
        pipe.write(chunk)
    pipe.finish()
    time.sleep(0.2)
    # The export ended in time: the client reads the rest at its own pace.
    drained = [pipe.get() for _ in range(QUEUE_CHUNKS + 1)]
    assert drained == [*chunks, END]


def test_a_count_past_the_direct_limit_answers_504_and_creates_nothing(
    create_app, rt, token, user, api_settings
):
    # The client waits for the count whatever the strategy will be: it has the direct limit.
    settings = api_settings.model_copy(update={"direct_timeout_seconds": 1})
    lock = TableLock(api_settings.database_url)
    try:
        with TestClient(create_app(settings, rt=rt)) as client:
            started = time.monotonic()
            resp = client.post(
                "/api/products/export",
                json={"mode": "background"},
                headers={"Authorization": f"Bearer {token(user, *PERMS)}"},
            )
    finally:
        lock.release()
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["code"] == "timeout"
    assert resp.json()["error"]["message"].startswith("counting the rows took longer than 1 s;")
    assert time.monotonic() - started < 8
    with psycopg.connect(api_settings.database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM export_jobs WHERE user_id = %s", (user,)
        ).fetchone() == (0,)
