"""The Prefect server restarted under a running export: the export completes, and what the
server and the job record say stays true."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.orchestration.export_flow import export_flow
from tests.e2e.conftest import free_port, wait_for
from tests.faults.conftest import ROWS
from tests.flows.helpers import RUN_TIMEOUT, in_background, new_job, reference, started, stored

pytestmark = [pytest.mark.faults, pytest.mark.slow]


class OwnPrefect:
    """`prefect server start` on a port and a SQLite file of the test's own."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.log = home / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            PREFECT_HOME=str(home),
            PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="false",
        )
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for("the Prefect server to answer", self.healthy, timeout=120, every=0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a crash, not a graceful stop
            self.proc.wait(30)


@pytest.fixture
def own_prefect(tmp_path: Path):
    server = OwnPrefect(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_prefect_server_killed_and_restarted_mid_export(own_prefect, own_rt):
    rt = own_rt
    job = new_job(rt)
    expected = reference(rt, job)
    outage: list[float] = []

    def restart_once_started() -> None:
        started(rt, job)
        began = time.monotonic()
        own_prefect.stop()
        statuses = {rt.jobs.get(job.id).status}
        own_prefect.start()
        outage.append(time.monotonic() - began)
        statuses.add(rt.jobs.get(job.id).status)
        assert statuses == {"processing"}, statuses

    with temporary_settings(updates={PREFECT_API_URL: own_prefect.api_url}):
        restarter = in_background(restart_once_started)
        state = export_flow(str(job.id), return_state=True)
        restarter.result(RUN_TIMEOUT)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
    done = rt.jobs.get(job.id)
    assert state.is_completed(), (state.message, done.error_code, done.error, outage)
    assert (done.status, done.processed_rows) == ("completed", ROWS)
    assert stored(rt, done.file_key) == expected
    # The restarted server knows the run, and knows it finished.
    assert run.state.is_completed(), run.state
    assert outage and outage[0] > 1
    print(f"Prefect server down for {outage[0]:.1f} s; the export completed")
