"""POST /api/{module}/export: the strategy at its boundaries, the bytes, the rows it leaves,
the limits under concurrency, and the Idempotency-Key. Thresholds are small here: up to 10
rows direct, up to 100 streamed, the rest in the background."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from prefect.client.orchestration import get_client

from api.options import ExportOptions, to_request
from flows.control.errors import InvalidRequest
from flows.datapath.engine import export
from flows.datapath.request import plan_export
from flows.orchestration.export_flow import export_flow
from tests.api.conftest import LoopbackServer

PERMS = ("products:read",)
ALL = {"scope": "all"}


@pytest.fixture
def api_settings(api_settings):
    """Small strategy thresholds; limits out of the way unless a test sets them."""
    return api_settings.model_copy(
        update={"direct_max_rows": 10, "stream_max_rows": 100, "rate_limit_per_hour": 1000}
    )


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, *PERMS)}"}


@pytest.fixture
def deployment(harness):
    """The export deployment submit_and_attach names; nothing runs its flow runs here."""
    export_flow.to_deployment(name="export").apply()


def first(n: int) -> dict:
    """A body selecting products 1..n by a filter."""
    return {"filters": [{"column": "id", "op": "lte", "value": n}]}


def rows_of(db_url: str, user: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT strategy, status, processed_rows, file_bytes, sha256, file_key, error_code,"
            " total_rows, flow_run_id, id FROM export_jobs WHERE user_id = %s ORDER BY created_at",
            (user,),
        ).fetchall()


def engine_bytes(body: dict, registry, settings) -> bytes:
    """What the engine writes for the same request."""
    plan = plan_export(
        to_request("products", ExportOptions.model_validate(body)), registry, settings
    )
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    return buf.getvalue()


def test_translation_maps_every_option():
    opts = ExportOptions.model_validate(
        {
            "scope": "selected",
            "format": "csv",
            "selectedIds": [3, 1],
            "selectedColumns": ["id", "name"],
            "dateRange": {"from": "2024-01-01", "to": "2024-02-01"},
            "filters": [{"column": "price", "op": "gte", "value": 5}],
            "timezone": "Europe/Paris",
            "csv": {"delimiter": ";", "bom": True, "gzip": True, "header": False},
        }
    )
    req = to_request("products", opts)
    assert (req.module, req.ids, req.columns) == ("products", [3, 1], ["id", "name"])
    assert (req.date_from, req.date_to, req.timezone) == (
        "2024-01-01",
        "2024-02-01",
        "Europe/Paris",
    )
    assert (req.delimiter, req.bom, req.gzip, req.header) == (";", True, True, False)
    assert req.filters[0].column == "price"
    assert to_request("products", ExportOptions(selected_ids=[1])).ids is None  # scope all
    with pytest.raises(InvalidRequest, match="selectedIds"):
        to_request("products", ExportOptions(scope="selected"))


@pytest.mark.parametrize("n", [1, 10])
def test_direct_up_to_the_limit_is_the_engines_file(
    client, headers, user, n, registry, api_settings
):
    body = {"scope": "selected", "selectedIds": list(range(1, n + 1))}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == engine_bytes(body, registry, api_settings)
    assert resp.headers["content-length"] == str(len(resp.content))
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="products-export-')
    assert disposition.endswith('Z.csv"') and "T" in disposition
    [row] = rows_of(api_settings.database_url, user)
    assert row[:6] == ("direct", "completed", n, len(resp.content), row[4], None)
    assert len(row[4]) == 64


@pytest.mark.parametrize("n", [11, 100])
def test_stream_between_the_limits_is_the_engines_file(
    client, headers, user, n, registry, api_settings
):
    resp = client.post("/api/products/export", json=first(n), headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == engine_bytes(first(n), registry, api_settings)
    assert "content-length" not in resp.headers
    assert resp.headers["content-disposition"].endswith('.csv"')
    [row] = rows_of(api_settings.database_url, user)
    assert row[:4] == ("stream", "completed", n, len(resp.content))
    assert row[5] is None


def test_xlsx_direct_has_its_media_type(client, headers):
    resp = client.post("/api/products/export", json={"format": "xlsx", **first(3)}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert resp.headers["content-disposition"].endswith('.xlsx"')
    assert resp.content[:2] == b"PK"


def _run_parameters(run_id) -> dict:
    with get_client(sync_client=True) as c:
        return c.read_flow_run(run_id).parameters


def test_past_the_stream_limit_is_a_background_job(client, headers, user, api_settings, deployment):
    resp = client.post("/api/products/export", json=first(101), headers=headers)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending" and body["totalRows"] == 101
    assert body["pollUrl"] == f"http://testserver/api/exports/{body['jobId']}"
    assert resp.headers["location"] == body["pollUrl"]
    [row] = rows_of(api_settings.database_url, user)
    assert row[0:2] == ("background", "pending") and row[7] == 101
    assert _run_parameters(row[8]) == {"job_id": body["jobId"], "attempt": 0}
    assert client.get(f"/api/exports/{body['jobId']}", headers=headers).status_code == 200


def test_mode_background_even_for_one_row(client, headers, user, api_settings, deployment):
    body = {"mode": "background", **first(1)}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    assert rows_of(api_settings.database_url, user)[0][0] == "background"


def test_unknown_field_is_a_422_naming_its_path(client, headers, user, api_settings):
    resp = client.post("/api/products/export", json={"csv": {"quote": "'"}}, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["fields"][0]["field"] == "body.csv.quote"
    assert rows_of(api_settings.database_url, user) == []


def test_bad_value_from_the_engine_is_a_422_and_no_row(client, headers, user, api_settings):
    body = {"selectedColumns": ["cost_price"]}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "column_not_allowed"
    assert rows_of(api_settings.database_url, user) == []


def test_no_permission_is_a_403_and_no_row(client, token, user, api_settings):
    headers = {"Authorization": f"Bearer {token(user, 'tags:read')}"}
    resp = client.post("/api/products/export", json=ALL, headers=headers)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "permission_denied"
    assert rows_of(api_settings.database_url, user) == []


def test_simultaneous_requests_admit_exactly_the_limit(create_app, api_settings, rt, token, user):
    settings = api_settings.model_copy(update={"rate_limit_per_hour": 10})
    auth = {"Authorization": f"Bearer {token(user, *PERMS)}"}
    with LoopbackServer(create_app(settings, rt=rt)) as server:

        def post(_):
            return httpx.post(
                f"{server.url}/api/products/export", json=first(2), headers=auth, timeout=60
            )

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(post, range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 10 + [429] * 10
    refused = [r for r in answers if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert all(3500 <= int(r.headers["retry-after"]) <= 3600 for r in refused)
    assert len(rows_of(api_settings.database_url, user)) == 10


def test_active_background_cap_is_a_429(create_app, api_settings, rt, token, user, deployment):
    settings = api_settings.model_copy(update={"max_active_background": 2})
    auth = {"Authorization": f"Bearer {token(user, *PERMS)}"}
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, rt=rt)) as c:
        body = {"mode": "background", **first(5)}
        for _ in range(2):
            assert c.post("/api/products/export", json=body, headers=auth).status_code == 202
        resp = c.post("/api/products/export", json=body, headers=auth)
        assert resp.status_code == 429
        assert resp.json()["error"]["code"] == "too_many_active"
        assert int(resp.headers["retry-after"]) > 0
        # Direct exports are not background jobs: still allowed.
        assert c.post("/api/products/export", json=first(5), headers=auth).status_code == 200
    assert len(rows_of(api_settings.database_url, user)) == 3


def test_idempotency_key_returns_the_same_job(client, headers, user, api_settings, deployment):
    keyed = {**headers, "Idempotency-Key": "order-42"}
    one = client.post("/api/products/export", json=first(5), headers=keyed)
    two = client.post("/api/products/export", json=first(5), headers=keyed)
    assert one.status_code == two.status_code == 202, one.text
    assert one.json() == two.json()
    assert one.headers["location"] == two.headers["location"]
    other = client.post(
        "/api/products/export", json=first(5), headers={**headers, "Idempotency-Key": "x"}
    )
    assert other.json()["jobId"] != one.json()["jobId"]
    assert len(rows_of(api_settings.database_url, user)) == 2


def test_a_key_sent_with_another_request_is_a_422_and_creates_nothing(
    client, headers, user, api_settings, deployment
):
    keyed = {**headers, "Idempotency-Key": "order-43"}
    assert client.post("/api/products/export", json=first(5), headers=keyed).status_code == 202
    other = client.post("/api/products/export", json=first(6), headers=keyed)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "new key" in other.json()["error"]["message"]
    assert len(rows_of(api_settings.database_url, user)) == 1


def test_a_client_leaving_mid_stream_stops_the_reads(create_app, api_settings, rt, token, user):
    # Ten-row chunks over 2,000 rows: far more than the queue holds ahead of the client.
    settings = api_settings.model_copy(
        update={"stream_max_rows": 5000, "chunk_rows": 10, "first_chunk_rows": 10}
    )
    auth = {"Authorization": f"Bearer {token(user, *PERMS)}"}
    with LoopbackServer(create_app(settings, rt=rt)) as server, httpx.Client(timeout=30) as c:
        with c.stream("POST", f"{server.url}/api/products/export", json=ALL, headers=auth) as r:
            assert r.status_code == 200
            next(r.iter_raw())
        deadline = time.monotonic() + 20
        while rows_of(api_settings.database_url, user)[0][1] != "failed":
            assert time.monotonic() < deadline, rows_of(api_settings.database_url, user)
            time.sleep(0.1)
    row = rows_of(api_settings.database_url, user)[0]
    assert (row[0], row[6]) == ("stream", "client_disconnected")


def test_a_key_older_than_a_day_starts_a_new_export(
    client, headers, user, api_settings, deployment
):
    keyed = {**headers, "Idempotency-Key": "daily"}
    one = client.post("/api/products/export", json=first(5), headers=keyed).json()
    with psycopg.connect(api_settings.database_url) as conn:
        conn.execute(
            "UPDATE export_jobs SET created_at = now() - interval '25 hours' WHERE id = %s",
            (one["jobId"],),
        )
    two = client.post("/api/products/export", json=first(5), headers=keyed)
    assert two.status_code == 202 and two.json()["jobId"] != one["jobId"]


def test_an_offset_postgresql_would_refuse_bounds_the_same_instant(client, headers):
    # Python reads offsets up to 23:59, PostgreSQL only to 15:59: bounds travel in UTC.
    ids = {"scope": "selected", "selectedIds": list(range(1, 11))}
    offset = {**ids, "dateRange": {"from": "2024-01-01T00:00:00+23:59"}}
    utc = {**ids, "dateRange": {"from": "2023-12-31T00:01:00Z"}}
    got = client.post("/api/products/export", json=offset, headers=headers)
    assert got.status_code == 200, got.text
    assert got.content == client.post("/api/products/export", json=utc, headers=headers).content


def test_a_date_past_year_9999_is_a_422_naming_the_bound(client, headers):
    body = {"dateRange": {"to": "9999-12-31"}}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_date"
    assert "'to'" in resp.json()["error"]["message"]
