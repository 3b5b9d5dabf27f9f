"""Related sheets through the API: listed per caller, refused without their permission,
and delivered direct or streamed as the engine writes them (the size counts children)."""

from __future__ import annotations

import csv
import io
import zipfile

import psycopg
import pytest

from api.options import ExportOptions, to_request
from flows.datapath.engine import export
from flows.datapath.request import plan_export


@pytest.fixture
def api_settings(api_settings):
    """Up to 10 rows direct, up to 100 streamed."""
    return api_settings.model_copy(
        update={"direct_max_rows": 10, "stream_max_rows": 100, "rate_limit_per_hour": 1000}
    )


def engine_bytes(body: dict, registry, settings) -> bytes:
    plan = plan_export(
        to_request("products", ExportOptions.model_validate(body)), registry, settings
    )
    buf = io.BytesIO()
    export(settings.database_url, plan, buf, settings)
    return buf.getvalue()


def job_row(db_url: str, user: str) -> tuple:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT strategy, status, processed_rows, total_rows FROM export_jobs"
            " WHERE user_id = %s",
            (user,),
        ).fetchone()


def children(db_url: str, last_id: int) -> int:
    with psycopg.connect(db_url) as conn:
        sql = "SELECT count(*) FROM product_tags WHERE product_id <= %s"
        return conn.execute(sql, (last_id,)).fetchone()[0]


def test_modules_lists_the_relations_the_caller_may_add(client, token):
    both = {"Authorization": f"Bearer {token('alice', 'products:read', 'tags:read')}"}
    products = next(
        m
        for m in client.get("/api/modules", headers=both).json()["modules"]
        if m["name"] == "products"
    )
    assert products["relations"] == [
        {
            "name": "tags",
            "label": "Tags",
            "columns": ["Product ID", "Tag ID", "Added at", "Note", "Tag", "Slug"],
        }
    ]
    tags = next(m for m in client.get("/api/modules", headers=both).json()["modules"])
    assert tags["name"] == "tags" and tags["relations"] == []


def test_direct_csv_with_a_relation_is_a_zip(client, token, user, registry, api_settings):
    headers = {"Authorization": f"Bearer {token(user, 'products:read', 'tags:read')}"}
    body = {"scope": "selected", "selectedIds": [1, 2, 3], "relations": ["tags"]}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    assert resp.headers["content-disposition"].endswith('.zip"')
    assert resp.content == engine_bytes(body, registry, api_settings)
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    assert archive.namelist() == ["products.csv", "Tags.csv"]
    tags = list(csv.reader(io.StringIO(archive.read("Tags.csv").decode(), newline="")))
    assert len(tags) - 1 == children(api_settings.database_url, 3)
    rows = 3 + children(api_settings.database_url, 3)
    assert job_row(api_settings.database_url, user) == ("direct", "completed", rows, rows)


def test_children_count_toward_the_strategy(client, token, user, registry, api_settings):
    # 8 products alone would be direct; with their tags they are past the direct limit.
    headers = {"Authorization": f"Bearer {token(user, 'products:read', 'tags:read')}"}
    body = {
        "format": "xlsx",
        "filters": [{"column": "id", "op": "lte", "value": 8}],
        "relations": ["tags"],
    }
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == engine_bytes(body, registry, api_settings)
    rows = 8 + children(api_settings.database_url, 8)
    assert rows > 10
    assert job_row(api_settings.database_url, user) == ("stream", "completed", rows, rows)


def test_a_relation_without_its_permission_is_a_403(client, token, user, api_settings):
    headers = {"Authorization": f"Bearer {token(user, 'products:read')}"}
    body = {"relations": ["tags"]}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "permission_denied"
    assert "tags:read" in resp.json()["error"]["message"]
    assert job_row(api_settings.database_url, user) is None


def test_an_unknown_relation_is_a_422_naming_the_declared_ones(client, token, user):
    headers = {"Authorization": f"Bearer {token(user, 'products:read')}"}
    resp = client.post("/api/products/export/preview", json={"relations": ["x"]}, headers=headers)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "unknown_relation" and "tags" in error["message"]
