"""Filter groups, the new operators and sorts through POST /api/{module}/export and its preview."""

from __future__ import annotations

import io

import polars as pl
import psycopg
import pytest

from api.options import ExportOptions, to_request
from flows.control.admission import Limits, admit
from flows.control.errors import IdempotencyKeyReused
from flows.datapath.request import plan_export

PERMS = ("products:read",)
GROUP = {
    "any": [
        {"column": "id", "op": "lt", "value": 40},
        {
            "all": [
                {"column": "id", "op": "gt", "value": 1960},
                {"column": "price", "op": "is_null"},
            ]
        },
    ]
}
WHERE = "id < 40 OR (id > 1960 AND price IS NULL)"


@pytest.fixture
def headers(token, user):
    return {"Authorization": f"Bearer {token(user, *PERMS)}"}


def sql_ids(db_url: str, where: str, order: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        sql = f"SELECT id FROM products WHERE {where} ORDER BY {order}"
        return [r[0] for r in conn.execute(sql).fetchall()]


def test_a_group_and_a_sort_export_what_sql_selects_in_its_order(client, headers, db_url, user):
    body = {"filters": [GROUP], "sort": [{"column": "id", "direction": "desc"}]}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    got = pl.read_csv(io.BytesIO(resp.content))["ID"].to_list()
    want = sql_ids(db_url, WHERE, "id DESC")
    assert got == want and len(want) > 40
    # The job row keeps the request as given: groups and sort are part of its options.
    with psycopg.connect(db_url) as conn:
        (options,) = conn.execute(
            "SELECT options FROM export_jobs WHERE user_id = %s", (user,)
        ).fetchone()
    assert options["filters"] == [{"any": [
        {"column": "id", "op": "lt", "value": 40},
        {"all": [
            {"column": "id", "op": "gt", "value": 1960},
            {"column": "price", "op": "is_null", "value": None},
        ]},
    ]}]  # fmt: skip
    assert options["sort"] == [{"column": "id", "direction": "desc"}]


def test_the_preview_counts_the_new_operators(client, headers, db_url):
    filters = [
        {"column": "price", "op": "between", "value": [100, "2000.5"]},
        {"column": "description", "op": "not_in", "value": ["plain", "@import"]},
        {
            "any": [
                {"column": "name", "op": "starts_with", "value": "=sum"},
                {"column": "in_stock", "op": "neq", "value": True},
            ]
        },
    ]
    resp = client.post("/api/products/export/preview", json={"filters": filters}, headers=headers)
    assert resp.status_code == 200, resp.text
    where = (
        "price BETWEEN 100 AND 2000.5"
        " AND (description NOT IN ('plain', '@import') OR description IS NULL)"
        " AND (lower(name) LIKE '=sum%' OR in_stock IS DISTINCT FROM true)"
    )
    want = len(sql_ids(db_url, where, "id"))
    assert resp.json()["totalRows"] == want and 0 < want < 2000


def test_a_sort_without_an_index_is_a_422_naming_the_index(client, headers, db_url, user):
    body = {"sort": [{"column": "price", "direction": "desc"}]}
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "sort_not_indexed"
    assert error["message"].endswith('CREATE INDEX ON public.products ("price", "id")')
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM export_jobs WHERE user_id = %s", (user,))
        assert rows.fetchone()[0] == 0


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"filters": [{"any": []}]}, "invalid_request", "filters.0.any"),
        (
            {"filters": [{"column": "id", "op": "between", "value": [1]}]},
            "invalid_filter_value",
            "two values",
        ),
        (
            {"sort": [{"column": "id", "direction": "sideways"}]},
            "invalid_request",
            "sort.0.direction",
        ),
        (
            {"sort": [{"column": "cost_price"}]},
            "sort_not_allowed",
            "cannot sort on column 'cost_price'",
        ),
    ],
)
def test_bad_groups_and_sorts_are_422s(client, headers, body, code, says):
    resp = client.post("/api/products/export", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and says in error["message"]


@pytest.mark.parametrize(
    "change",
    [{"sort": [{"column": "id", "direction": "desc"}]}, {"filters": [{"any": [GROUP]}]}],
)
def test_an_idempotency_key_names_the_sort_and_the_groups(rt, registry, api_settings, user, change):
    def options(body):
        plan = plan_export(
            to_request("products", ExportOptions.model_validate(body)), registry, api_settings
        )
        return plan.request.model_dump(mode="json", by_alias=True)

    limits = Limits(1000, 1000)
    base = {"filters": [GROUP]}
    job, created = admit(rt.jobs, user, "background", options(base), limits, "k-1")
    assert created
    assert admit(rt.jobs, user, "background", options(base), limits, "k-1") == (job, False)
    with pytest.raises(IdempotencyKeyReused):
        admit(rt.jobs, user, "background", options(base | change), limits, "k-1")
