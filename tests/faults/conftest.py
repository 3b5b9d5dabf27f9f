"""Parts the fault tests own and may break: a PostgreSQL server of their own (never the
shared one), and the flows' runtime pointed at it."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from flows.control.database import embedded_url, pgserver, stop_embedded
from flows.control.migrate import migrate
from flows.orchestration.export_flow import export_flow
from flows.tools.seed import seed
from tests.flows.conftest import flows_runtime
from tests.flows.helpers import in_background, new_job, reference, started
from tests.s3server import LoopbackS3
from tests.s3server import own_s3 as own_s3_server

ROWS = 2_000
CHUNK_ROWS = 200


class OwnPostgres:
    """An embedded PostgreSQL in a folder of the test's, which the test may restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server_url = embedded_url(data_dir)

    def database(self, name: str) -> str:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_conninfo(self.server_url, dbname=name)

    def restart(self, down_seconds: float = 0.0) -> float:
        """Stop the server (fast: sessions are ended), wait, start it; seconds it was down."""
        # The same server object the first start made (the package keeps one per folder):
        # its start() runs pg_ctl again on the same data and socket.
        server = pgserver().get_server(self.data_dir / "pg", cleanup_mode=None)
        began = time.monotonic()
        server.stop()
        time.sleep(down_seconds)
        server.start()
        return time.monotonic() - began

    def stop(self) -> None:
        stop_embedded(self.data_dir)


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's alone, with the demo tables and the schema."""
    server = OwnPostgres(tmp_path_factory.mktemp("own-pg"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_db(own_postgres: OwnPostgres) -> str:
    url = own_postgres.database("faults")
    migrate(url)
    seed(url, rows=ROWS, tag_rows=100)
    return url


def start_export(rt):
    """A background job started on a thread: (job, the reference bytes, the run's future),
    once its run has stored a first chunk."""
    job = new_job(rt)
    expected = reference(rt, job)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt, job)
    return job, expected, run


def _on_own_db(own_db: str, tmp_path: Path) -> dict[str, str]:
    return {
        "EXPORTFLOW_DATABASE_URL": own_db,
        "EXPORTFLOW_DATA_DIR": str(tmp_path),
        "EXPORTFLOW_STORAGE_URL": (tmp_path / "exports").as_uri(),
        "EXPORTFLOW_CHUNK_ROWS": str(CHUNK_ROWS),
        # One range per chunk task: faults strike between chunks as they were planned.
        "EXPORTFLOW_CHUNK_RANGES": "1",
    }


@pytest.fixture
def own_rt(own_db: str, harness, tmp_path: Path):
    """The flows' runtime on the test's own server, storing in a folder."""
    with flows_runtime(**_on_own_db(own_db, tmp_path)) as rt:
        yield rt


@pytest.fixture(scope="module")
def own_s3():
    """An S3 server of this module's alone, with the test bucket, which it may stop."""
    s3 = own_s3_server()
    try:
        yield s3
    finally:
        s3.stop()
        shutil.rmtree(s3.root, ignore_errors=True)


@pytest.fixture
def own_rt_s3(own_db: str, own_s3: LoopbackS3, harness, tmp_path: Path):
    """The flows' runtime on the test's own server and its own S3, under a fresh prefix."""
    server = own_s3.server
    env = _on_own_db(own_db, tmp_path) | {
        "EXPORTFLOW_STORAGE_URL": f"s3://{server.bucket}/f-{uuid.uuid4().hex[:8]}",
        "EXPORTFLOW_S3_ENDPOINT_URL": server.endpoint_url,
        "EXPORTFLOW_S3_ACCESS_KEY": server.access_key,
        "EXPORTFLOW_S3_SECRET_KEY": server.secret_key,
        "EXPORTFLOW_S3_REGION": server.region,
    }
    with flows_runtime(**env) as rt:
        yield rt
