"""The API in-process against the test database: an app per test, tokens, jobs in any state."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from flows.control.jobs import Job, JobStore
from flows.control.settings import Settings
from flows.control.settings import get_settings as cached_settings
from flows.control.storage import Storage
from flows.orchestration.runtime import Runtime
from tests.e2e.conftest import free_port

SECRET = "api-test-secret-0123456789abcdef-0123456789"
JWT_SECRET = "api-test-jwt-secret-0123456789abcdef-0123"


@pytest.fixture(scope="session")
def create_app():
    """api.main's factory. Importing the module builds `app` from the environment, which
    needs a development environment here; the cached settings are dropped afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPORTFLOW_ENV", "development")
        cached_settings.cache_clear()  # settings cached by earlier tests predate the variable
        from api.main import create_app

    cached_settings.cache_clear()
    return create_app


@pytest.fixture
def api_settings(settings: Settings, tmp_path) -> Settings:
    """Production settings with a real secret, an HS256 token key and a folder per test."""
    return settings.model_copy(
        update={
            "env": "production",
            "secret_key": SecretStr(SECRET),
            "jwt_secret": SecretStr(JWT_SECRET),
            "storage_url": (tmp_path / "files").as_uri(),
            "public_api_url": "http://testserver",
        }
    )


def make_runtime(settings: Settings, registry) -> Runtime:
    """The runtime the app would build at start-up, from the session's registry."""
    url = settings.database_url
    return Runtime(settings, url, registry, Storage.from_settings(settings), JobStore(url))


@pytest.fixture
def rt(api_settings: Settings, registry) -> Runtime:
    """The API's runtime for this test."""
    return make_runtime(api_settings, registry)


@pytest.fixture
def app(create_app, api_settings: Settings, rt: Runtime) -> FastAPI:
    return create_app(api_settings, rt=rt)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """In-process client; a bug answers 500 instead of raising in the test."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def token(api_settings: Settings) -> Callable[..., str]:
    """`token(user, *permissions)`: an HS256 bearer token this API accepts."""
    from flows.control.tokens import mint_token

    return lambda user="alice", *perms: mint_token(api_settings, user, perms or ["tags:read"], 600)


@pytest.fixture
def auth(token) -> Callable[..., dict[str, str]]:
    """`auth(user)`: the Authorization header for `user`."""
    return lambda user="alice": {"Authorization": f"Bearer {token(user)}"}


def user_id() -> str:
    """A user no other test shares (the database is the session's)."""
    return f"user-{time.monotonic_ns()}"


@pytest.fixture
def user() -> str:
    """A user of this test alone, so its limits and jobs start from nothing."""
    return user_id()


def new_job(rt: Runtime, user: str, module: str = "tags", fmt: str = "csv") -> Job:
    """A pending background job of `user`."""
    options = {"module": module, "format": fmt}
    return rt.jobs.create(user, module, fmt, "background", options)


def completed_job(
    rt: Runtime, user: str, data: bytes, module: str = "tags", expires_in: float = 3600
) -> Job:
    """A completed job whose file (`data`) is in the runtime's storage."""
    job = new_job(rt, user, module)
    rt.jobs.claim(job.id, job.attempt, None)
    key = f"exports/{job.id}/{module}.csv"
    with rt.storage.open_write(key) as f:
        f.write(data)
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    file = (key, len(data), hashlib.sha256(data).hexdigest())
    return rt.jobs.complete(job.id, job.attempt, 3, file, expires)


class LoopbackServer:
    """An app under uvicorn on a loopback port, in a thread (streaming, Range, curl)."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        # A port chosen beforehand lets the app's settings name its own public URL.
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
