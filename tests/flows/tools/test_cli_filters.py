"""The command line's filters, groups and sorts: the rows SQL selects, in its order."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import psycopg
import pytest

from tests.flows.tools.cli_run import exportflow


def sql_ids(db_url: str, where: str, order: str = "id") -> list[int]:
    with psycopg.connect(db_url) as conn:
        sql = f"SELECT id FROM products WHERE {where} ORDER BY {order}"
        return [r[0] for r in conn.execute(sql).fetchall()]


def test_new_operators_an_any_group_and_a_sort(cli_env, tmp_path: Path, db_url):
    out = tmp_path / "p.csv"
    args = ["--filter", "price:between:10,5000", "--filter", "description:not_null"]
    args += ["--any", "name:starts_with:=", "--any", "in_stock:is_null", "--any", "id:in:5,6"]
    run = exportflow(
        cli_env, "export", "products", "--columns", "id", *args, "--sort", "id:desc", "-o", str(out)
    )
    assert run.returncode == 0, run.stderr
    where = (
        "price BETWEEN 10 AND 5000 AND description IS NOT NULL"
        " AND (name LIKE '=%' OR in_stock IS NULL OR id IN (5, 6))"
    )
    want = sql_ids(db_url, where, "id DESC")
    assert pl.read_csv(out)["ID"].to_list() == want and len(want) > 50


def test_filters_json_nests_groups(cli_env, db_url):
    nested = [
        {"column": "sku", "op": "not_in", "value": ["00000001", "00000002"]},
        {"any": [{"all": [{"column": "id", "op": "lt", "value": 100},
                          {"column": "price", "op": "is_null"}]},
                 {"column": "id", "op": "gt", "value": 1990}]},
    ]  # fmt: skip
    run = exportflow(cli_env, "export", "products", "--filters-json", json.dumps(nested), "--count")
    assert run.returncode == 0, run.stderr
    where = "sku NOT IN ('00000001', '00000002') AND ((id < 100 AND price IS NULL) OR id > 1990)"
    assert int(run.stdout) == len(sql_ids(db_url, where)) > 10


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ["--sort", "price"],
            "sort_not_indexed",
            'CREATE INDEX ON public.products ("price", "id")',
        ),
        (["--sort", "id:sideways"], "invalid_option", "'sideways' must be asc or desc"),
        (["--filters-json", "{"], "invalid_request", "--filters-json is not JSON"),
        (["--filters-json", "{}"], "invalid_request", "a JSON list"),
        (["--filter", "price:is_null:1"], "invalid_filter_value", "takes no value"),
        (["--any", "price:between:1"], "invalid_filter_value", "needs two values"),
        (["--filter", "price"], "invalid_request", "COLUMN:is_null"),
    ],
)
def test_bad_filters_and_sorts_exit_2_saying_what_to_change(cli_env, tmp_path, args, code, says):
    out = tmp_path / "out.csv"
    run = exportflow(cli_env, "export", "products", *args, "-o", str(out))
    assert run.returncode == 2
    assert run.stderr.startswith(f"error [{code}]: ") and says in run.stderr, run.stderr
    assert not out.exists()
