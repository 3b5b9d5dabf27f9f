"""Session fixtures: a real PostgreSQL database created and dropped per test session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from flows.control.migrate import migrate
from flows.control.registry import Registry, load_checked_registry
from flows.control.settings import DEMO_DATASETS, Settings
from flows.tools.seed import seed

pytest_plugins = ["tests.s3server", "tests.notify_servers"]

SEED_ROWS = 2_000


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory):
    """The server: EXPORTFLOW_TEST_DATABASE_URL, else an embedded one for this session."""
    url = os.environ.get("EXPORTFLOW_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from flows.control.database import embedded_url, stop_embedded

    data_dir = tmp_path_factory.mktemp("embedded")
    yield embedded_url(data_dir)
    stop_embedded(data_dir)


@pytest.fixture(scope="session")
def db_url(server_url: str):
    """A fresh database with the schema and the demo tables; dropped afterwards."""
    name = f"exportflow_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(server_url, dbname=name)
    try:
        migrate(url)
        seed(url, rows=SEED_ROWS, tag_rows=500)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            # `exportflow up` and the cluster test keep their Prefect servers' state beside it.
            for db in (name, f"{name}_prefect", f"{name}_cluster_prefect"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the test database and a temporary data dir; small chunks."""
    data = tmp_path_factory.mktemp("data")
    return Settings(
        database_url=db_url,
        data_dir=data,
        storage_url=(data / "exports").as_uri(),
        chunk_rows=300,
        _env_file=None,
    )


@pytest.fixture(scope="session")
def harness():
    """Prefect's test server for the session (the flows' and the API's tests share it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def registry(db_url: str) -> Registry:
    """The demo registry, checked against the test database."""
    return load_checked_registry(DEMO_DATASETS, db_url)


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment for running the `exportflow` command against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    env.update(
        EXPORTFLOW_DATABASE_URL=settings.database_url,
        EXPORTFLOW_DATA_DIR=str(tmp_path / "data"),
        EXPORTFLOW_CHUNK_ROWS="300",
    )
    return env
