"""Storage fixtures: a local folder per test, and the session's S3 server under a fresh prefix."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.control.settings import Settings
from flows.control.storage import Storage
from tests.flows.control.storage_helpers import API, SECRET


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list:
    """Exceptions swallowed by finalisers (e.g. a half-written file flushing itself)."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        storage_url=(tmp_path / "exports").as_uri(),
        secret_key=SecretStr(SECRET),
        public_api_url=API,
    )


@pytest.fixture
def local(local_settings: Settings) -> Storage:
    return Storage.from_settings(local_settings)


@pytest.fixture(scope="module")
def s3(s3_server):
    return s3_server.client()


@pytest.fixture
def store(s3_settings: Settings) -> Storage:
    return Storage(s3_settings.resolved_storage_url, s3_settings)


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound by us, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def down(s3_settings: Settings, closed_port: int) -> Storage:
    settings = s3_settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{closed_port}"})
    return Storage(settings.resolved_storage_url, settings)
