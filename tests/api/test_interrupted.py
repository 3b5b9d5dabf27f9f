"""A streamed export whose API process is killed mid-response ends `failed`, `interrupted`:
the API runs as a real uvicorn process, the client stops reading, the process gets SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from flows.control.jobs import JobStore
from flows.control.lease import INTERRUPTED, end_interrupted
from flows.control.settings import Settings
from flows.control.tokens import mint_token
from tests.api.conftest import JWT_SECRET, SECRET, user_id
from tests.e2e.conftest import free_port, wait_for
from tests.flows.helpers import dataset_file, lease_free

ROOT = Path(__file__).resolve().parents[2]
# About 48 MB of CSV in 4 KB rows: far more than the response queue and the socket
# buffers hold, so an export whose client stops reading stays in the middle.
SQL = """
DROP TABLE IF EXISTS interrupted_rows;
CREATE TABLE interrupted_rows (id integer PRIMARY KEY, body text);
INSERT INTO interrupted_rows SELECT g, repeat(md5(g::text), 128) FROM generate_series(1, 12000) g;
"""
YAML = """
modules:
  interrupted_rows:
    table: public.interrupted_rows
    key: id
    permission: rows:read
    columns: {id: null, body: null}
"""
LONG = 3600.0


@pytest.fixture
def api_process(db_url: str, tmp_path: Path):
    """`uvicorn api.main:app` in a process of its own; yields its URL and the process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        EXPORTFLOW_DATABASE_URL=db_url,
        EXPORTFLOW_DATA_DIR=str(tmp_path / "data"),
        EXPORTFLOW_DATASETS=str(dataset_file(db_url, tmp_path, SQL, YAML)),
        EXPORTFLOW_SECRET_KEY=SECRET,
        EXPORTFLOW_JWT_SECRET=JWT_SECRET,
        EXPORTFLOW_DIRECT_MAX_ROWS="10",
        EXPORTFLOW_CHUNK_ROWS="200",
        EXPORTFLOW_LOG_FORMAT="text",
        PREFECT_API_URL="http://127.0.0.1:9/api",  # a streamed export never calls Prefect
    )
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed after the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, (tmp_path / "api.log").read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("the API to answer", up, 60, every=0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()


def test_killed_api_process_leaves_its_stream_interrupted_not_processing(db_url, api_process):
    url, proc = api_process
    user = user_id()
    settings = Settings(_env_file=None, jwt_secret=SecretStr(JWT_SECRET))
    headers = {"Authorization": f"Bearer {mint_token(settings, user, ['rows:read'])}"}
    jobs = JobStore(db_url)
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{url}/api/interrupted_rows/export", json={}, headers=headers) as r,
    ):
        assert r.status_code == 200, r.read()
        body = r.iter_raw()  # kept: a dropped iterator closes the connection
        assert next(body).startswith(b"id,body")  # the rows have started; then we stop
        (job,) = jobs.list_owned(user, 5)
        assert (job.strategy, job.status, job.holder is not None) == ("stream", "processing", True)
        # The process lives: however long its export takes, nothing ends it.
        time.sleep(1)
        assert job.id not in [j.id for j in end_interrupted(db_url, LONG)]
        now = jobs.get(job.id)
        assert now.status == "processing", (now.error_code, now.error)
        proc.kill()
        proc.wait(10)
    wait_for("the killed process's lease to be freed", lambda: lease_free(db_url, job.holder), 10)
    assert jobs.get(job.id).status == "processing"  # nothing else would ever end it
    assert [j.id for j in end_interrupted(db_url, LONG) if j.user_id == user] == [job.id]
    ended = jobs.get(job.id)
    assert (ended.status, ended.error_code, ended.error) == ("failed", "interrupted", INTERRUPTED)
