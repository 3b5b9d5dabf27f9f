"""A real API on loopback for the client commands: the flows' storage and Prefect server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from pydantic import SecretStr

from flows.control.jobs import Job
from flows.control.settings import Settings
from flows.control.tokens import mint_token
from flows.orchestration.export_flow import export_flow
from flows.orchestration.runtime import Runtime
from tests.api import conftest as api_fixtures
from tests.api.conftest import JWT_SECRET, SECRET, LoopbackServer, make_runtime
from tests.e2e.conftest import free_port

# The API tests' session fixture that imports api.main, shared under a name of its own.
api_app_factory = api_fixtures.create_app

PERMS = ("products:read", "tags:read")


@dataclass(frozen=True)
class Api:
    """A running API: its URL, settings and runtime."""

    url: str
    settings: Settings
    rt: Runtime
    app: FastAPI
    server: LoopbackServer

    def token(self, user: str, *perms: str) -> str:
        """A bearer token of `user` this API accepts."""
        return mint_token(self.settings, user, perms or PERMS, 600)


@contextmanager
def running_api(api_app_factory, settings: Settings, registry, **overrides) -> Iterator[Api]:
    """The API under uvicorn, storing where the flows store, submitting to the harness;
    `overrides` change its settings."""
    port = free_port()
    api_settings = settings.model_copy(
        update={
            "env": "production",
            "secret_key": SecretStr(SECRET),
            "jwt_secret": SecretStr(JWT_SECRET),
            "storage_url": settings.resolved_storage_url,
            # Its download links must point at this very server.
            "public_api_url": f"http://127.0.0.1:{port}",
            "rate_limit_per_hour": 1000,
            **overrides,
        }
    )
    export_flow.to_deployment(name="export").apply()
    rt = make_runtime(api_settings, registry)
    app = api_app_factory(api_settings, rt=rt)
    with LoopbackServer(app, port) as server:
        yield Api(server.url, api_settings, rt, app, server)


@pytest.fixture
def api(api_app_factory, settings: Settings, registry, flows_env) -> Iterator[Api]:
    """The API with the test settings."""
    with running_api(api_app_factory, settings, registry) as running:
        yield running


@pytest.fixture
def user() -> str:
    """A user no other test shares."""
    return f"cli-user-{time.monotonic_ns()}"


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    """The client's environment: no database, no Prefect, only what the test adds."""
    prefixes = ("EXPORTFLOW_", "PREFECT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["EXPORTFLOW_DATA_DIR"] = str(tmp_path / "client-data")
    return env


@pytest.fixture
def as_user(client_env, api: Api, user: str) -> dict[str, str]:
    """The client's environment for `user` against the API."""
    return {**client_env, "EXPORTFLOW_API_URL": api.url, "EXPORTFLOW_TOKEN": api.token(user)}


def submitted(api: Api, user: str, timeout: float = 60) -> Job:
    """The user's newest job once the API has handed it to Prefect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = api.rt.jobs.list_owned(user, 1)
        if jobs and jobs[0].flow_run_id is not None:
            return jobs[0]
        time.sleep(0.1)
    raise AssertionError(f"no submitted job of {user} after {timeout:.0f} s")


def run_as_worker(job: Job) -> None:
    """Execute the job's flow run in this process, as a worker of the deployment would."""
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(job.flow_run_id)
    state = run_flow(export_flow, flow_run=flow_run, return_type="state")
    assert state.is_completed(), state
