"""Where `up` puts the Prefect server's state: PostgreSQL beside exportflow, else SQLite."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from sqlalchemy import create_engine, text

from flows.control.settings import Settings
from flows.tools.prefect_db import asyncpg_url, prefect_database, sibling_database_name


@pytest.fixture
def scratch(server_url: str):
    """A database of its own, and its `_prefect` sibling dropped afterwards."""
    name = f"exportflow_pdb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        for db in (name, f"{name}_prefect"):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.mark.contrib  # Prefect needs pg_trgm
def test_the_prefect_database_is_created_beside_exportflows_and_reached(scratch, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    url, which = prefect_database(settings, scratch, tmp_path)
    name = sibling_database_name(scratch)
    assert which == f"PostgreSQL database {name}"
    # The URL reaches the new database (through the sync driver: same address, same name).
    sync = url.replace("postgresql+asyncpg", "postgresql+psycopg")
    with create_engine(sync).connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == name
    # A second `up` finds it and uses it again.
    assert prefect_database(settings, scratch, tmp_path) == (url, which)


@pytest.mark.contrib
def test_a_role_that_may_not_create_databases_falls_back_to_sqlite(scratch, server_url, tmp_path):
    role = f"exportflow_nocreate_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        url, which = prefect_database(
            Settings(_env_file=None), make_conninfo(scratch, user=role), tmp_path
        )
        assert url == f"sqlite+aiosqlite:///{tmp_path / 'prefect' / 'prefect.db'}"
        assert "no CREATEDB privilege" in which
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')


def test_an_explicit_prefect_database_url_wins(scratch, tmp_path):
    settings = Settings(_env_file=None, prefect_database_url="sqlite+aiosqlite:///x.db")
    assert prefect_database(settings, scratch, tmp_path)[0] == "sqlite+aiosqlite:///x.db"
    assert not _exists(scratch, sibling_database_name(scratch))


def test_a_socket_directory_goes_to_asyncpg_as_its_host_argument():
    url = asyncpg_url("postgresql://postgres:@/postgres?host=/tmp/pg%20sock", "postgres_prefect")
    assert url == "postgresql+asyncpg://postgres@/postgres_prefect?host=%2Ftmp%2Fpg+sock"
    url = asyncpg_url("host=db.internal port=6543 user=u password=p:w dbname=x", "x_prefect")
    assert url == "postgresql+asyncpg://u:p%3Aw@db.internal:6543/x_prefect"


def _exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        )
