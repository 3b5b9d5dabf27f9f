"""The `exportflow` command as an operator runs it: real process, real database."""

from __future__ import annotations

import contextlib
import csv
import os
import pty
import socket
import zipfile
from pathlib import Path

import openpyxl
import psycopg
import pytest

from tests.flows.tools.cli_run import exportflow

MIGRATIONS = Path(__file__).resolve().parents[3] / "flows" / "control" / "migrations"


def test_export_writes_file_and_says_what_it_wrote(cli_env, tmp_path: Path):
    out = tmp_path / "products.csv"
    run = exportflow(
        cli_env,
        "export",
        "products",
        "--columns",
        "id,sku",
        "--filter",
        "id:lte:900",
        "--bom",
        "-o",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    # stderr is no terminal here: one line, no progress bar redrawn into a log.
    assert run.stderr == f"wrote 900 rows, {out.stat().st_size:,} bytes to {out}\n"
    with out.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ID", "SKU"] and rows[1] == ["1", "00000001"] and len(rows) == 901
    assert [p.name for p in tmp_path.iterdir()] == ["products.csv", "data"] or len(
        list(tmp_path.glob("*.part"))
    ) == 0


def test_export_shows_progress_on_a_terminal(cli_env, tmp_path: Path):
    out = tmp_path / "products.csv"
    terminal, stderr = pty.openpty()
    with os.fdopen(terminal, "rb", buffering=0) as screen:
        run = exportflow(
            cli_env, "export", "products", "--filter", "id:lte:900", "-o", str(out), stderr=stderr
        )
        os.close(stderr)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once everything written has been read
            while block := screen.read(4096):
                shown += block
    assert run.returncode == 0
    text = shown.decode()
    assert "900/900 rows 100.0%" in text and "rows/s" in text, text
    assert text.rstrip().endswith(f"wrote 900 rows, {out.stat().st_size:,} bytes to {out}")


def test_an_unreachable_database_is_a_clear_error_and_no_file(cli_env, tmp_path: Path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {**cli_env, "EXPORTFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x"}
    out = tmp_path / "products.csv"
    run = exportflow(env, "export", "products", "-o", str(out))
    assert run.returncode == 2
    assert run.stderr.startswith("error [source_unavailable]: "), run.stderr
    assert not out.exists() and not list(tmp_path.glob(".products.csv.*"))


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["nope"], "unknown_module"),
        (["products", "--columns", "id,cost_price"], "column_not_allowed"),
        (["products", "--filter", "supplier_email:eq:x"], "filter_not_allowed"),
        (["products", "--filter", "price:near:1"], "unknown_operator"),
        (["products", "--filter", "price"], "invalid_request"),
        (["products", "--from", "2024-99-01"], "invalid_date"),
        (["products", "--from", "2024-02-01", "--to", "2024-01-01"], "invalid_date_range"),
        (["products", "--timezone", "Nowhere/Land"], "invalid_timezone"),
        (["products", "--columns", ""], "empty_columns"),
        (["products", "--format", "ods"], "unsupported_format"),
        (["products", "--delimiter", '"'], "invalid_option"),
        (["products", "--ids", "1,x"], "invalid_filter_value"),
        (["products", "--relations", "nope"], "unknown_relation"),
        (["products", "--relations", "tags", "--gzip"], "invalid_option"),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(cli_env, tmp_path: Path, args, code):
    out = tmp_path / "out.csv"
    run = exportflow(cli_env, "export", *args, "-o", str(out))
    assert run.returncode == 2
    assert run.stderr.startswith(f"error [{code}]: ")
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


def test_failure_midway_leaves_no_partial_file(cli_env, tmp_path: Path, settings):
    out = tmp_path / "out.csv"
    (tmp_path / "ds.yaml").write_text(
        "modules:\n  slow:\n    table: public.cli_slow\n    key: id\n    permission: x\n"
        "    columns: {id: null, name: null}\n"
    )
    cli_env = {
        **cli_env,
        "EXPORTFLOW_DATASETS": str(tmp_path / "ds.yaml"),
        "EXPORTFLOW_STATEMENT_TIMEOUT_SECONDS": "0.5",
    }
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS cli_slow;"
            " CREATE TABLE cli_slow AS SELECT id, name FROM products;"
            " ALTER TABLE cli_slow ADD PRIMARY KEY (id)"
        )
        # Held while the export runs: its reads wait past the statement timeout.
        with conn.transaction():
            conn.execute("LOCK TABLE cli_slow IN ACCESS EXCLUSIVE MODE")
            run = exportflow(cli_env, "export", "slow", "-o", str(out))
    assert run.returncode == 2, run.stderr
    assert "error [timeout]" in run.stderr and "cli_slow" not in run.stderr
    assert list(tmp_path.glob("*out.csv*")) == []


def test_seed_and_migrate_are_idempotent(server_url):
    name = "exportflow_test_seed"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        env = {"EXPORTFLOW_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        first, second = exportflow(env, "migrate"), exportflow(env, "migrate")
        names = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))
        assert len(names) >= 4 and names[0] == "0001_export_jobs"
        assert (first.returncode, first.stdout) == (0, f"applied {', '.join(names)}\n"), (
            first.stderr
        )
        assert (second.returncode, second.stdout) == (0, "the schema is up to date\n")
        for _ in range(2):
            run = exportflow(env, "seed", "--rows", "3000")
            assert run.returncode == 0, run.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT count(*), count(DISTINCT sku) FROM products"
            ).fetchone() == (3000, 3000)
            hostile = conn.execute(
                "SELECT count(*) FROM products WHERE name ~ '^[=+@-]' OR name ~ '[\\r\\n,\"]'"
            ).fetchone()[0]
            assert hostile > 500
            assert conn.execute("SELECT count(*) FROM export_jobs").fetchone() == (0,)
            # Every product but each fourth has 1-3 tags; no link is repeated by a second seed.
            assert conn.execute(
                "SELECT count(*), count(DISTINCT product_id) FROM product_tags"
            ).fetchone() == (4500, 2250)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_bad_setting_is_a_config_error(cli_env, tmp_path: Path):
    run = exportflow({**cli_env, "EXPORTFLOW_CHUNK_ROWS": "many"}, "export", "tags", "--count")
    assert run.returncode == 2
    assert run.stderr.startswith("error [config_error]: EXPORTFLOW_CHUNK_ROWS='many': ")


def test_count_prints_matching_rows_and_writes_nothing(cli_env, tmp_path: Path):
    run = exportflow(
        cli_env, "export", "products", "--filter", "id:lte:900", "--count", cwd=tmp_path
    )
    assert (run.returncode, run.stdout) == (0, "900\n"), run.stderr
    assert list(tmp_path.iterdir()) == []
    both = exportflow(cli_env, "export", "products", "--count", "-o", str(tmp_path / "x.csv"))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_export_with_relations_writes_a_sheet_per_table(cli_env, tmp_path: Path, settings):
    out = tmp_path / "p.xlsx"
    args = ["export", "products", "--format", "xlsx", "--relations", "tags", "--ids", "1,2,3"]
    run = exportflow(cli_env, *args, "-o", str(out))
    assert run.returncode == 0, run.stderr
    wb = openpyxl.load_workbook(out, read_only=True)
    counts = {ws.title: sum(1 for _ in ws.iter_rows()) - 1 for ws in wb}
    with psycopg.connect(settings.database_url) as conn:
        sql = "SELECT count(*) FROM product_tags WHERE product_id IN (1, 2, 3)"
        links = conn.execute(sql).fetchone()[0]
    assert counts == {"products": 3, "Tags": links} and links == 6
    zipped = tmp_path / "p.zip"
    run = exportflow(
        cli_env, "export", "products", "--relations", "tags", "--ids", "1", "-o", str(zipped)
    )
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(zipped) as archive:
        assert archive.namelist() == ["products.csv", "Tags.csv"]
        assert archive.read("Tags.csv").decode().count("\r\n") == 2  # header and one tag
