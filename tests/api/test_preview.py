"""POST /api/{module}/export/preview: the strategy an export would get, its rows and file
name; the same refusals as the export; nothing created and no rate limit spent. Thresholds
are small here: up to 10 rows direct, up to 100 streamed, the rest in the background."""

from __future__ import annotations

import re

import psycopg
import pytest

PREVIEW = "/api/products/export/preview"


@pytest.fixture
def api_settings(api_settings):
    return api_settings.model_copy(
        update={"direct_max_rows": 10, "stream_max_rows": 100, "rate_limit_per_hour": 1}
    )


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, 'products:read')}"}


def first(n: int, **options) -> dict:
    """A body selecting products 1..n by a filter."""
    return {"filters": [{"column": "id", "op": "lte", "value": n}], **options}


def jobs_of(db_url: str, user: str) -> int:
    with psycopg.connect(db_url) as conn:
        query = "SELECT count(*) FROM export_jobs WHERE user_id = %s"
        return conn.execute(query, (user,)).fetchone()[0]


@pytest.mark.parametrize(
    ("body", "rows", "strategy"),
    [
        (first(10), 10, "direct"),
        (first(11), 11, "stream"),
        (first(100), 100, "stream"),
        (first(101), 101, "background"),
        (first(1, mode="background"), 1, "background"),
    ],
)
def test_preview_names_the_strategy_at_each_boundary_and_creates_nothing(
    client, headers, user, api_settings, body, rows, strategy
):
    resp = client.post(PREVIEW, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert (answer["totalRows"], answer["strategy"], answer["format"]) == (rows, strategy, "csv")
    assert re.fullmatch(r"products-export-\d{8}T\d{6}Z\.csv", answer["filename"])
    assert jobs_of(api_settings.database_url, user) == 0


def test_preview_names_the_file_the_format_gives(client, headers):
    xlsx = client.post(PREVIEW, json={"format": "xlsx", **first(3)}, headers=headers).json()
    assert (xlsx["format"], xlsx["filename"][-5:]) == ("xlsx", ".xlsx")
    gz = client.post(PREVIEW, json={"csv": {"gzip": True}, **first(3)}, headers=headers).json()
    assert gz["filename"].endswith(".csv.gz")


def test_a_user_at_the_hourly_limit_can_still_preview(client, headers, user, api_settings):
    assert client.post("/api/products/export", json=first(2), headers=headers).status_code == 200
    refused = client.post("/api/products/export", json=first(2), headers=headers)
    assert refused.status_code == 429
    resp = client.post(PREVIEW, json=first(2), headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["totalRows"] == 2
    assert jobs_of(api_settings.database_url, user) == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (PREVIEW, {"selectedColumns": ["cost_price"]}, 422, "column_not_allowed"),
        (PREVIEW, {"csv": {"quote": "'"}}, 422, "invalid_request"),
        ("/api/tags/export/preview", {}, 403, "permission_denied"),
        ("/api/nope/export/preview", {}, 404, "unknown_module"),
    ],
)
def test_preview_refuses_what_the_export_refuses(client, headers, path, body, status, code):
    export_path = path.removesuffix("/preview")
    resp = client.post(path, json=body, headers=headers)
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)
    export = client.post(export_path, json=body, headers=headers)
    assert (export.status_code, export.json()["error"]) == (status, resp.json()["error"])


def test_preview_without_a_token_is_a_401(client):
    resp = client.post(PREVIEW, json={})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_token"
