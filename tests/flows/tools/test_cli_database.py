"""The CLI and its database: where the embedded one lives, what it says, read-only commands."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.flows.tools.cli_run import ROOT, checkout_env, exportflow

ANNOUNCE = "starting an embedded PostgreSQL in {} (set EXPORTFLOW_DATABASE_URL to use your own)\n"


def bare_env() -> dict[str, str]:
    """This environment without any exportflow setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}


def test_default_data_dir_is_the_checkouts_whatever_the_working_directory(tmp_path: Path):
    code = "from flows.control.settings import Settings; print(Settings().data_dir)"
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=checkout_env(bare_env()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == ROOT / ".exportflow"


def test_starting_the_embedded_server_is_announced_and_reusing_it_is_not(tmp_path: Path):
    env = {**bare_env(), "EXPORTFLOW_DATA_DIR": str(tmp_path / "data")}
    try:
        first = exportflow(env, "db", "url", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stderr == ANNOUNCE.format(tmp_path / "data" / "pg")
        again = exportflow(env, "db", "url", cwd=tmp_path)
        assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
    finally:
        assert exportflow(env, "db", "stop").stdout == "stopped\n"


def test_export_modules_and_count_only_read_the_database(cli_env, tmp_path: Path):
    # Every transaction read-only, as on a replica or for a read-only role.
    env = {**cli_env, "PGOPTIONS": "-c default_transaction_read_only=on"}
    out = tmp_path / "tags.csv"
    export = exportflow(env, "export", "tags", "--filter", "id:lte:10", "-o", str(out))
    assert export.returncode == 0, export.stderr
    with out.open(newline="") as f:
        assert len(list(csv.reader(f))) == 11
    count = exportflow(env, "export", "tags", "--count")
    assert (count.returncode, count.stdout) == (0, "500\n"), count.stderr
    assert exportflow(env, "modules").returncode == 0
    migrate = exportflow(env, "migrate")
    assert migrate.returncode == 2
    assert migrate.stderr.startswith("error [source_error]: cannot apply the schema migrations")
    assert "the connection is read-only and the statement tried to write" in migrate.stderr


def test_modules_lists_columns_labels_and_types(cli_env):
    run = exportflow(cli_env, "modules", "--json")
    assert run.returncode == 0, run.stderr
    products = {m["name"]: m for m in json.loads(run.stdout)}["products"]
    assert products["table"] == "public.products" and products["key"] == "id"
    assert (products["date_column"], products["permission"]) == ("created_at", "products:read")
    assert products["columns"][:2] == [
        {"name": "id", "label": "ID", "type": "bigint"},
        {"name": "sku", "label": "SKU", "type": "text"},
    ]
    assert {"name": "price", "label": "Price", "type": "numeric(12,2)"} in products["columns"]
    assert "cost_price" not in {c["name"] for c in products["columns"]}
    [tags] = products["relations"]
    assert (tags["name"], tags["label"], tags["permission"]) == ("tags", "Tags", "tags:read")
    assert [c["label"] for c in tags["columns"]][-2:] == ["Tag", "Slug"]

    text = exportflow(cli_env, "modules")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "products  (public.products)" in lines
    assert "  key: id   date column: created_at   permission: products:read" in lines
    assert any(line.split() == ["price", "Price", "numeric(12,2)"] for line in lines)
    assert "  never exported: cost_price, supplier_email" in lines
    assert (
        "  related sheet --relations tags: Tags (Product ID, Tag ID, Added at, Note, Tag, Slug)"
        in lines
    )
