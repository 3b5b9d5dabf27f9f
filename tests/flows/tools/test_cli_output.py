"""Where `exportflow export` writes: checked before reading, stdout, and never a partial file."""

from __future__ import annotations

import gzip
import io
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.flows.tools.cli_run import checkout_env, cli_command, exportflow

LOCK = 4242


def module_file(tmp_path: Path, table: str) -> Path:
    """A dataset file with one module `m` over `table` (id, name)."""
    path = tmp_path / "ds.yaml"
    path.write_text(
        f"modules:\n  m:\n    table: {table}\n    key: id\n    permission: x\n"
        "    columns: {id: null, name: null}\n"
    )
    return path


@pytest.fixture
def poisoned(cli_env, tmp_path: Path, settings) -> dict:
    """Environment whose module `m` fails on its first row: what passes ran before reading."""
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "CREATE OR REPLACE VIEW cli_poisoned AS SELECT id, (1/0)::text AS name FROM products"
        )
    ds = module_file(tmp_path, "public.cli_poisoned")
    return {**cli_env, "EXPORTFLOW_DATASETS": str(ds)}


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("missing/out.csv", "folder {tmp}/missing does not exist; create it first"),
        ("folder", "{tmp}/folder is a folder; name a file in it, e.g. -o {tmp}/folder/m.csv"),
        ("ds.yaml/out.csv", "{tmp}/ds.yaml is not a folder"),
        ("/proc/out.csv", "cannot write in folder /proc ("),
    ],
)
def test_unusable_output_is_refused_before_reading(poisoned, tmp_path: Path, output, says):
    (tmp_path / "folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    path = output if output.startswith("/") else str(tmp_path / output)
    run = exportflow(poisoned, "export", "m", "-o", path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error [invalid_output]: {says.format(tmp=tmp_path)}")
    assert "Traceback" not in run.stderr and sorted(tmp_path.rglob("*")) == before


def test_stdout_gets_the_same_bytes_as_a_file(cli_env, tmp_path: Path):
    for fmt, extra in (("csv", ["--gzip"]), ("xlsx", [])):
        args = ["export", "products", "--format", fmt, *extra, "--filter", "id:lte:700"]
        out = tmp_path / f"p.{fmt}"
        to_file = exportflow(cli_env, *args, "-o", str(out))
        piped = exportflow(cli_env, *args, "-o", "-", text=False)
        assert to_file.returncode == 0 and piped.returncode == 0, piped.stderr
        assert piped.stdout == out.read_bytes()
        said = f"wrote 700 rows, {len(piped.stdout):,} bytes to standard output\n"
        assert piped.stderr.decode() == said
    assert gzip.decompress((tmp_path / "p.csv").read_bytes()).startswith(b"ID,SKU,")
    assert zipfile.ZipFile(io.BytesIO(piped.stdout)).testzip() is None


def waiting_on_table(conn: psycopg.Connection, table: str) -> bool:
    """Whether a session is blocked on the test's lock of `table`."""
    return conn.execute(
        "SELECT count(*) > 0 FROM pg_locks"
        " WHERE locktype = 'relation' AND NOT granted AND relation = %s::regclass",
        (table,),
    ).fetchone()[0]


def test_sigterm_mid_export_leaves_no_file(cli_env, tmp_path: Path, settings):
    # The test holds an exclusive lock on the table: the export has opened its temporary
    # file and is stuck in its first read when the signal comes.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS cli_gated;"
            " CREATE TABLE cli_gated AS SELECT id, name FROM products;"
            " ALTER TABLE cli_gated ADD PRIMARY KEY (id)"
        )
        env = {**cli_env, "EXPORTFLOW_DATASETS": str(module_file(tmp_path, "public.cli_gated"))}
        out = tmp_path / "out.csv"
        with conn.transaction():
            conn.execute("LOCK TABLE cli_gated IN ACCESS EXCLUSIVE MODE")
            with open(tmp_path / "stderr", "wb") as err:
                proc = subprocess.Popen(
                    cli_command("export", "m", "-o", str(out)), env=checkout_env(env), stderr=err
                )
            deadline = time.monotonic() + 60
            while not (
                waiting_on_table(conn, "cli_gated") and list(tmp_path.glob(".out.csv.*.part"))
            ):
                assert proc.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, "the export never reached the locked table"
                time.sleep(0.05)
            assert not out.exists()
            proc.send_signal(signal.SIGTERM)
        # The lock is released with the transaction: the read ends, the export then unwinds.
        code = proc.wait(60)
    assert code == 128 + signal.SIGTERM, (tmp_path / "stderr").read_text()
    assert (tmp_path / "stderr").read_text().endswith("terminated\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.yaml", "stderr"]


def test_full_disk_is_a_storage_error(cli_env):
    with open("/dev/full", "wb") as full:
        run = exportflow(cli_env, "export", "tags", "-o", "-", stdout=full)
    assert run.returncode == 2
    assert run.stderr.endswith(
        "error [storage_full]: no space left writing standard output; free some or use another -o\n"
    )


def test_reader_leaving_early_is_reported_once(cli_env, tmp_path: Path):
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            cli_command("export", "products", "-o", "-"),
            env=checkout_env(cli_env),
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout.read(10) == b"ID,SKU,Nam"
        proc.stdout.close()  # as `| head -c 10` does
        assert proc.wait(60) == 2
    stderr = (tmp_path / "stderr").read_text()
    assert stderr.endswith(
        "error [invalid_output]: standard output was closed before the export ended\n"
    )
    assert "Exception" not in stderr and "Traceback" not in stderr
