"""The whole stack for end-to-end tests: `exportflow up` as a subprocess on unusual ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from psycopg.conninfo import conninfo_to_dict

from flows.control.jobs import FINAL, JobStore
from flows.control.registry import load_checked_registry
from flows.control.settings import DEMO_DATASETS, Settings
from flows.control.storage import Storage
from flows.orchestration.forked_runs import process_of
from flows.orchestration.runtime import Runtime
from flows.tools.prefect_db import asyncpg_url

CHUNK_ROWS = 100
# Two ranges per chunk task: several ranges in one chunk file, and still chunks enough to
# kill a run between them. 2000 rows: the measuring chunk of 100, then ten of up to 200.
CHUNK_RANGES = 2
CHUNKS = 11


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable, timeout: float, every: float = 0.1):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Stack:
    """A running `exportflow up` and what the tests need to talk to it."""

    proc: subprocess.Popen
    log: Path
    prefect_port: int
    api_port: int
    rt: Runtime

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """`up` and everything below it."""
        try:
            top = psutil.Process(self.proc.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def flow_run_process(self, run_id) -> psutil.Process | None:
        """The process serve forked for this flow run, as its log names it."""
        pid = process_of(self.log.parent / "logs" / "serve.log", run_id)
        return next((p for p in self.processes() if p.pid == pid), None)

    def job_final(self, job_id, timeout: float = 120):
        """Wait until the job row reaches a final status."""
        return wait_for(
            f"job {job_id} to finish",
            lambda: (j := self.rt.jobs.get(job_id)).status in FINAL and j,
            timeout,
            every=0.2,
        )

    def run_state(self, run_id, done: Callable, what: str, timeout: float = 60):
        """Wait until the flow run's state satisfies `done`."""

        def check():
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
            return done(run.state) and run

        return wait_for(f"flow run {run_id} to be {what}", check, timeout, every=0.2)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM `up` and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def settle_earlier_tests(db_url: str) -> None:
    """End what earlier test modules left on the shared test database: their background
    jobs never handed to Prefect (a stack's first reconcile would submit them all, ahead of
    the module's own runs, and fill the export slots) and their schedules (its serve would
    mirror them into Prefect and fire them)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE export_jobs SET status = 'cancelled', error_code = 'cancelled',"
            " error = 'left by an earlier test module', finished_at = now()"
            " WHERE status IN ('pending', 'processing')"
        )
        conn.execute("DELETE FROM export_schedules")


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """More environment for a module's `exportflow up` (none unless the module says)."""
    return {}


@pytest.fixture(scope="module")
def stack(db_url: str, tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str]):
    """`exportflow up` against the test database, a temporary data dir and free ports."""
    data = tmp_path_factory.mktemp("stack")
    prefect_port, api_port = free_port(), free_port()
    settle_earlier_tests(db_url)
    # A Prefect database of this module's stack alone: a later stack on the same test
    # database must not inherit the scheduled cleanup runs an earlier one left, which its
    # `serve` would start, late, beside the tests' own runs.
    prefect_db = f"{conninfo_to_dict(db_url)['dbname']}_prefect_{data.name}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        trgm = "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"
        if conn.execute(trgm).fetchone():
            conn.execute(f'CREATE DATABASE "{prefect_db}"')
            prefect_url = asyncpg_url(db_url, prefect_db)
        else:
            # The embedded server has no contrib extensions, which Prefect's schema needs:
            # SQLite in the data dir, as `up` itself falls back to.
            prefect_url = f"sqlite+aiosqlite:///{data / 'prefect.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
    env.update(
        EXPORTFLOW_PREFECT_DATABASE_URL=prefect_url,
        EXPORTFLOW_ENV="development",
        EXPORTFLOW_DATABASE_URL=db_url,
        EXPORTFLOW_DATA_DIR=str(data),
        EXPORTFLOW_CHUNK_ROWS=str(CHUNK_ROWS),
        EXPORTFLOW_CHUNK_RANGES=str(CHUNK_RANGES),
        EXPORTFLOW_PREFECT_PORT=str(prefect_port),
        EXPORTFLOW_API_PORT=str(api_port),
    )
    env.update(stack_env)
    log = data / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.tools.cli", "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # Named in full: a session's other tests may have set EXPORTFLOW_* variables here.
    settings = Settings(
        database_url=db_url, data_dir=data, storage_url=(data.resolve() / "files").as_uri(),
        chunk_rows=CHUNK_ROWS, chunk_ranges=CHUNK_RANGES, _env_file=None,
    )  # fmt: skip
    registry = load_checked_registry(DEMO_DATASETS, db_url)
    rt = Runtime(settings, db_url, registry, Storage.from_settings(settings), JobStore(db_url))
    s = Stack(proc, log, prefect_port, api_port, rt)
    try:
        wait_for(
            "`exportflow up` to report ready",
            lambda: "exportflow is up" in s.output() or proc.poll() is not None,
            timeout=240,
            every=0.5,
        )
        if proc.poll() is not None:
            pytest.fail(f"`exportflow up` exited with {proc.returncode}:\n{s.output()}")
        with temporary_settings(updates={PREFECT_API_URL: s.api_url}):
            yield s
    finally:
        family = s.processes()
        s.stop()
        _, alive = psutil.wait_procs(family, timeout=10)
        for p in alive:
            p.kill()
        print(s.output())
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{prefect_db}" WITH (FORCE)')
        assert not alive, f"left running after `exportflow up` stopped: {alive}"


CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (which downloads no browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield b
        b.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    """Saved with the test's output; EXPORTFLOW_UPDATE_SCREENSHOTS=1 also refreshes the
    README's copies (they show times, so every run would change them)."""
    path = tmp_path / name
    page.screenshot(path=path, full_page=True)
    if os.environ.get("EXPORTFLOW_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
