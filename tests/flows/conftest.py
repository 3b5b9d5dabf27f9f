"""Fixtures for the flows: a Prefect test server and the flows' runtime on the test database."""

from __future__ import annotations

import os

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.control import settings as settings_module
from flows.orchestration import export_flow as export_module
from flows.orchestration import runtime as runtime_module
from tests.flows.helpers import CHUNK_ROWS


@pytest.fixture(scope="session")
def harness():
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def rt(settings, harness):
    """The flows' runtime, pointed at the test database and a temporary folder store."""
    saved = dict(os.environ)
    os.environ.update(
        EXPORTFLOW_DATABASE_URL=settings.database_url,
        EXPORTFLOW_DATA_DIR=str(settings.data_dir),
        EXPORTFLOW_STORAGE_URL=settings.resolved_storage_url,
        EXPORTFLOW_CHUNK_ROWS="300",
    )
    settings_module.get_settings.cache_clear()
    runtime_module.runtime.cache_clear()
    yield runtime_module.runtime()
    os.environ.clear()
    os.environ.update(saved)
    settings_module.get_settings.cache_clear()
    runtime_module.runtime.cache_clear()


@pytest.fixture
def small_chunks(rt, monkeypatch):
    """Chunks of CHUNK_ROWS rows, retried at once; the chunk size is part of the checkpoint
    fingerprint, so a resumed run must see the same."""
    monkeypatch.setattr(rt.settings, "chunk_rows", CHUNK_ROWS)
    monkeypatch.setattr(export_module.export_chunk, "retry_delay_seconds", [0])
