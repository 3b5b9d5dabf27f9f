"""`deployments/cluster.sh up` for end-to-end tests: the script itself, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from flows.control.jobs import JobStore
from flows.control.registry import load_checked_registry
from flows.control.settings import DEMO_DATASETS, Settings
from flows.control.storage import Storage
from flows.control.tokens import mint_token
from flows.orchestration.runtime import Runtime
from flows.tools.prefect_db import asyncpg_url
from flows.tools.stack_process import descendants
from tests.e2e.conftest import CHUNK_ROWS, free_port, wait_for
from tests.s3server import S3Server

SCRIPT = Path(__file__).resolve().parents[2] / "deployments" / "cluster.sh"
SECRET = "cluster-test-secret-0123456789abcdef-01234"
JWT_SECRET = "cluster-test-jwt-secret-0123456789abcdef-0"
RATE_LIMIT = 3
WORKERS = ("worker-1", "worker-2")


@dataclass
class Cluster:
    """A running `cluster.sh up` and what the tests need to talk to it."""

    proc: subprocess.Popen
    dir: Path
    log: Path
    apis: list[str]
    prefect_api: str
    rt: Runtime
    startup_seconds: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The pid (= process group) of each part the script started, by name."""
        lines = (self.dir / "pids").read_text().split("\n")
        return {name: int(pid) for name, pid in (line.split() for line in lines if line)}

    def processes(self) -> list[psutil.Process]:
        """Every process the cluster runs, flow runs in their own sessions included: all
        of them live under one of the hosts' PREFECT_HOME folders."""
        found = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.environ().get("PREFECT_HOME", "").startswith(f"{self.dir}/"):
                    found.append(p)
        return found

    def lose_host(self, name: str) -> list[psutil.Process]:
        """SIGKILL a part and all it started, as when its host vanishes; what was killed."""
        pid = self.pids()[name]
        family = [psutil.Process(pid), *descendants(pid)]
        os.killpg(pid, signal.SIGKILL)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(family, timeout=10)
        return family

    def auth(self, user: str, *perms: str) -> dict[str, str]:
        """Headers with a token the replicas accept."""
        return {"Authorization": f"Bearer {mint_token(self.rt.settings, user, perms)}"}

    def status(self, api: str, job_id: str, headers: dict[str, str]) -> dict:
        """GET /api/exports/{id} from one replica."""
        r = httpx.get(f"{api}/api/exports/{job_id}", headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def download(self, api: str, job_id: str, headers: dict[str, str]) -> bytes:
        """The finished file, through the replica's link (a presigned S3 URL)."""
        link = httpx.get(f"{api}/api/exports/{job_id}/download", headers=headers, timeout=10)
        assert link.status_code == 302, link.text
        assert link.headers["location"].startswith(self.rt.settings.s3_endpoint_url)
        got = httpx.get(link.headers["location"], timeout=30)
        assert got.status_code == 200, got.text
        return got.content

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM the script and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def cluster_settings(db_url: str, s3: S3Server, data: Path) -> Settings:
    """The settings every host of the test cluster gets."""
    return Settings(
        env="production",
        database_url=db_url,
        data_dir=data,
        storage_url=f"s3://{s3.bucket}/cluster-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3.endpoint_url,
        s3_access_key=s3.access_key,
        s3_secret_key=SecretStr(s3.secret_key),
        s3_region=s3.region,
        secret_key=SecretStr(SECRET),
        jwt_secret=SecretStr(JWT_SECRET),
        chunk_rows=CHUNK_ROWS,
        rate_limit_per_hour=RATE_LIMIT,
        _env_file=None,
    )


def script_env(settings: Settings, root: Path) -> dict[str, str]:
    """The environment `cluster.sh up` is started with: the settings and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTFLOW_", "PREFECT_"))}
    env.update(
        CLUSTER_DIR=str(root),
        CLUSTER_BIN=str(Path(sys.executable).parent),
        CLUSTER_PREFECT_PORT=str(free_port()),
        CLUSTER_API_PORTS=f"{free_port()} {free_port()}",
        EXPORTFLOW_ENV=settings.env,
        EXPORTFLOW_DATABASE_URL=settings.database_url,
        EXPORTFLOW_STORAGE_URL=settings.storage_url,
        EXPORTFLOW_S3_ENDPOINT_URL=settings.s3_endpoint_url,
        EXPORTFLOW_S3_ACCESS_KEY=settings.s3_access_key,
        EXPORTFLOW_S3_SECRET_KEY=settings.s3_secret_key.get_secret_value(),
        EXPORTFLOW_S3_REGION=settings.s3_region,
        EXPORTFLOW_SECRET_KEY=SECRET,
        EXPORTFLOW_JWT_SECRET=JWT_SECRET,
        EXPORTFLOW_CHUNK_ROWS=str(settings.chunk_rows),
        EXPORTFLOW_RATE_LIMIT_PER_HOUR=str(settings.rate_limit_per_hour),
    )
    return env


def start_cluster(db_url: str, s3: S3Server, root: Path) -> Cluster:
    """`cluster.sh up` in the background, until it reports ready (or fails the test)."""
    settings = cluster_settings(db_url, s3, root / "tests")
    env = script_env(settings, root / "cluster")
    # A Prefect database of the cluster's own: an `exportflow up` on the same test database
    # must not find the cluster's work-pool deployments (its runs would wait for a worker
    # that is gone), nor the cluster its state.
    prefect_db = f"{conninfo_to_dict(db_url)['dbname']}_cluster_prefect"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{prefect_db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{prefect_db}"')
    env["EXPORTFLOW_PREFECT_DATABASE_URL"] = asyncpg_url(db_url, prefect_db)
    log = root / "cluster.log"
    began = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT), "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    registry = load_checked_registry(DEMO_DATASETS, db_url)
    rt = Runtime(settings, db_url, registry, Storage.from_settings(settings), JobStore(db_url))
    apis = [f"http://127.0.0.1:{port}" for port in env["CLUSTER_API_PORTS"].split()]
    prefect_api = f"http://127.0.0.1:{env['CLUSTER_PREFECT_PORT']}/api"
    c = Cluster(proc, root / "cluster", log, apis, prefect_api, rt, 0.0)
    try:
        wait_for(
            "`cluster.sh up` to report ready",
            lambda: "cluster is up" in c.output() or proc.poll() is not None,
            timeout=300,
            every=0.5,
        )
    except BaseException:
        c.stop()  # the script stops what it started
        raise
    if proc.poll() is not None:
        pytest.fail(f"`cluster.sh up` exited with {proc.returncode}:\n{c.output()}")
    c.startup_seconds = time.monotonic() - began
    return c
