"""GET /api/modules: the caller's modules only, their allow-listed columns with types, the
engine's filter operators and the configured bounds."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from flows.control.registry import load_checked_registry
from tests.api.conftest import make_runtime

PRODUCTS = [
    ("id", "ID", "bigint", "integer"),
    ("sku", "SKU", "text", "text"),
    ("name", "Name", "text", "text"),
    ("description", "Description", "text", "text"),
    ("price", "Price", "numeric(12,2)", "decimal"),
    ("external_id", "External ID", "uuid", "uuid"),
    ("attributes", "Attributes", "jsonb", "json"),
    ("in_stock", "In stock", "boolean", "boolean"),
    ("released_on", "Released on", "date", "date"),
    ("created_at", "Created at", "timestamp with time zone", "timestamp"),
    ("barcode", "Barcode", "bigint", "integer"),
    ("weight_kg", "Weight (kg)", "double precision", "decimal"),
]

DATASETS = """
modules:
  shifts:
    label: Work shifts
    table: public.modules_test_shifts
    key: id
    permission: shifts:read
    columns: {id: null, mood: Mood, starts: Starts, note: Note}
    sensitive: [secret]
  products:
    table: public.products
    key: id
    permission: products:read
    columns: {id: ID}
"""


@pytest.fixture
def api_settings(api_settings):
    return api_settings.model_copy(
        update={
            "direct_max_rows": 7,
            "stream_max_rows": 70,
            "max_selected_ids": 17,
            "max_columns": 27,
            "max_filters": 3,
        }
    )


def test_lists_the_callers_modules_with_their_columns_in_file_order(client, token):
    headers = {"Authorization": f"Bearer {token('alice', 'products:read')}"}
    resp = client.get("/api/modules", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    [products] = body["modules"]
    assert {k: v for k, v in products.items() if k != "columns"} == {
        "name": "products",
        "label": "products",
        "key": "id",
        "dateColumn": "created_at",
        "relations": [],  # its Tags sheet needs tags:read, which alice lacks
    }
    shown = [(c["name"], c["label"], c["type"], c["category"]) for c in products["columns"]]
    assert shown == PRODUCTS
    assert {"cost_price", "supplier_email"}.isdisjoint(c["name"] for c in products["columns"])
    assert all(c["filterable"] and c["labels"] is None for c in products["columns"])
    assert body["operators"] == [
        "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between",
        "contains", "starts_with", "is_null", "not_null",
    ]  # fmt: skip
    assert body["limits"] == {
        "directMaxRows": 7,
        "streamMaxRows": 70,
        "maxIds": 17,
        "maxColumns": 27,
        "maxFilters": 3,
    }


def test_a_token_without_module_permissions_sees_none_and_no_token_is_a_401(client, token):
    headers = {"Authorization": f"Bearer {token('alice', 'other:read')}"}
    assert client.get("/api/modules", headers=headers).json()["modules"] == []
    resp = client.get("/api/modules")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_token"


@pytest.fixture
def shifts_client(create_app, api_settings, db_url, tmp_path):
    """An app whose dataset file labels a module with an enum, a time and a sensitive column."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS modules_test_shifts; DROP TYPE IF EXISTS shift_mood")
        conn.execute("CREATE TYPE shift_mood AS ENUM ('tired', 'fine', 'great')")
        conn.execute(
            "CREATE TABLE modules_test_shifts (id integer PRIMARY KEY, mood shift_mood,"
            " starts time, note varchar(20), secret text)"
        )
    path = tmp_path / "datasets.yaml"
    path.write_text(DATASETS)
    rt = make_runtime(api_settings, load_checked_registry(path, db_url))
    with TestClient(create_app(api_settings, rt=rt), raise_server_exceptions=False) as c:
        yield c
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP TABLE modules_test_shifts; DROP TYPE shift_mood")


def test_a_labelled_module_shows_enum_labels_and_hides_sensitive_columns(shifts_client, token):
    headers = {"Authorization": f"Bearer {token('alice', 'shifts:read', 'products:read')}"}
    modules = shifts_client.get("/api/modules", headers=headers).json()["modules"]
    assert [(m["name"], m["label"]) for m in modules] == [
        ("shifts", "Work shifts"),
        ("products", "products"),
    ]
    assert modules[0]["dateColumn"] is None
    assert modules[0]["columns"] == [
        col("id", "id", "integer", "integer"),
        {**col("mood", "Mood", "shift_mood", "enum"), "labels": ["tired", "fine", "great"]},
        col("starts", "Starts", "time without time zone", "other"),
        col("note", "Note", "character varying(20)", "text"),
    ]


def col(name: str, label: str, pg_type: str, category: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": pg_type,
        "category": category,
        "labels": None,
        "filterable": True,
    }


def test_every_listed_module_previews_and_no_other_does(shifts_client, token):
    headers = {"Authorization": f"Bearer {token('alice', 'shifts:read')}"}
    listed = [
        m["name"] for m in shifts_client.get("/api/modules", headers=headers).json()["modules"]
    ]
    assert listed == ["shifts"]
    ok = shifts_client.post("/api/shifts/export/preview", json={}, headers=headers)
    assert (ok.status_code, ok.json()["totalRows"]) == (200, 0)
    refused = shifts_client.post("/api/products/export/preview", json={}, headers=headers)
    assert refused.status_code == 403
