"""Fixtures for the flows: a Prefect test server and the flows' runtime on the test database."""

from __future__ import annotations

import contextlib
import os

import pytest

from flows.control import settings as settings_module
from flows.orchestration import export_flow as export_module
from flows.orchestration import runtime as runtime_module
from tests.flows.helpers import CHUNK_ROWS


def _fresh_runtime() -> None:
    """Settings and runtime are read again from the environment on next use."""
    settings_module.get_settings.cache_clear()
    runtime_module.runtime.cache_clear()


@pytest.fixture(scope="session")
def flows_env(settings, harness):
    """The environment the flows read their settings from: the test database, a folder store."""
    saved = dict(os.environ)
    os.environ.update(
        EXPORTFLOW_DATABASE_URL=settings.database_url,
        EXPORTFLOW_DATA_DIR=str(settings.data_dir),
        EXPORTFLOW_STORAGE_URL=settings.resolved_storage_url,
        EXPORTFLOW_CHUNK_ROWS="300",
        # One key range per chunk task, so that tests count chunks as the CLI reads them;
        # tests of several ranges per task set chunk_ranges themselves.
        EXPORTFLOW_CHUNK_RANGES="1",
    )
    _fresh_runtime()
    yield
    os.environ.clear()
    os.environ.update(saved)
    _fresh_runtime()


@pytest.fixture
def rt(flows_env):
    """The runtime the flows use in this process (so a change to rt.settings reaches them)."""
    return runtime_module.runtime()


@contextlib.contextmanager
def flows_runtime(**env: str):
    """The flows' runtime in this process, read from the environment updated with `env`
    (restored afterwards)."""
    saved = dict(os.environ)
    os.environ.update(env)
    _fresh_runtime()
    try:
        yield runtime_module.runtime()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _fresh_runtime()


@pytest.fixture
def rt_s3(flows_env, s3_settings):
    """The flows' runtime storing on the test S3 server under a fresh prefix; the folder
    store comes back afterwards for the other tests."""
    with flows_runtime(
        EXPORTFLOW_STORAGE_URL=s3_settings.storage_url,
        EXPORTFLOW_S3_ENDPOINT_URL=s3_settings.s3_endpoint_url,
        EXPORTFLOW_S3_ACCESS_KEY=s3_settings.s3_access_key,
        EXPORTFLOW_S3_SECRET_KEY=s3_settings.s3_secret_key.get_secret_value(),
        EXPORTFLOW_S3_REGION=s3_settings.s3_region,
    ) as rt:
        yield rt


@pytest.fixture
def small_chunks(rt, monkeypatch):
    """Chunks of CHUNK_ROWS rows, retried at once; the chunk size is part of the checkpoint
    fingerprint, so a resumed run must see the same."""
    monkeypatch.setattr(rt.settings, "chunk_rows", CHUNK_ROWS)
    monkeypatch.setattr(export_module.export_chunk, "retry_delay_seconds", [0])
