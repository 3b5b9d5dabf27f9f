"""The embedded PostgreSQL: started when no URL is set, found again after its starter died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg


def db(env: dict, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "flows.tools.cli", "db", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_embedded_server_is_reused_then_stopped(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    env["EXPORTFLOW_DATA_DIR"] = str(tmp_path / "data")
    url = db(env, "url")
    with psycopg.connect(url) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = int((tmp_path / "data/pg/postmaster.pid").read_text().split()[0])
    assert pid != postmaster
    # A starter killed outright leaves the server running; the next start must reuse it.
    starter = subprocess.Popen(
        [sys.executable, "-m", "flows.tools.cli", "db", "url"], env=env, stdout=subprocess.PIPE
    )
    starter.wait(60)
    os.kill(postmaster, 0)
    assert db(env, "url") == url
    assert int((tmp_path / "data/pg/postmaster.pid").read_text().split()[0]) == postmaster
    assert db(env, "stop") == "stopped"
    assert not (tmp_path / "data/pg/postmaster.pid").exists()
    assert db(env, "stop") == "no embedded server running"
