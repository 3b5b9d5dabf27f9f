"""Connections kept between uses: ADBC readers and control-plane psycopg connections."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flows.control.arrow_conn import ArrowConnection
from flows.control.database import classify_db_error, reader_settings
from flows.control.errors import SourceUnavailable

if TYPE_CHECKING:
    import psycopg

# A new ADBC database connects once more and loads every pg_type row before the
# connection itself opens (35-60 ms); clones of a kept one skip both. Kept per conninfo,
# rebuilt when pg_type has grown since (a type created later would read as opaque).
_kept: dict[str, tuple[ArrowConnection, int]] = {}
_IDLE_KEPT = 8  # idle connections kept per URL, readers and control plane alike
_kept_lock = threading.Lock()
_TYPES_MARK = "SELECT max(oid)::bigint FROM pg_type"


def _types_mark(conn: ArrowConnection) -> int:
    mark = conn.query(_TYPES_MARK).column(0)[0].as_py()
    conn.commit()
    return mark


def _clone(conninfo: str) -> ArrowConnection:
    """A connection sharing a kept ADBC database whose types are current."""
    with _kept_lock:
        kept = _kept.get(conninfo)
        if kept is None:
            base = ArrowConnection.connect(conninfo)
            kept = _kept[conninfo] = (base, _types_mark(base))
    conn = kept[0].clone()
    try:
        if _types_mark(conn) == kept[1]:
            return conn
    except BaseException:
        conn.close()
        raise
    conn.close()
    with _kept_lock:
        if _kept.get(conninfo) is kept:
            del _kept[conninfo]
            kept[0].close()
    return _clone(conninfo)


_idle_readers: dict[str, list[ArrowConnection]] = {}


def _idle_reader(conninfo: str) -> ArrowConnection | None:
    """A kept reader connection, alive and knowing the current types; None if none is."""
    while True:
        with _kept_lock:
            idle = _idle_readers.get(conninfo)
            conn = idle.pop() if idle else None
            kept = _kept.get(conninfo)
        if conn is None:
            return None
        try:
            current = kept is not None and _types_mark(conn) == kept[1]
        except Exception:
            current = False  # ended by the server since: drop it
        if current:
            return conn
        conn.close()


def adbc_connect(url: str, statement_timeout_seconds: float | None = None) -> ArrowConnection:
    """A read-only ADBC connection for the Arrow data path; give it back with adbc_release."""
    while True:
        conn = _idle_reader(url)
        kept = conn is not None
        if conn is None:
            try:
                conn = _clone(url)
            except Exception as exc:
                message = "the database could not be reached"
                raise SourceUnavailable(message, detail=str(exc)) from exc
        try:
            # Whatever a last user set: 0 is no statement timeout.
            conn.query(reader_settings(statement_timeout_seconds))
            conn.commit()  # a later rollback must not undo it
            return conn
        except Exception as exc:
            conn.close()
            if not kept:
                raise classify_db_error(exc) from exc
            # A kept connection the server ended after its check (a restart): take another.


def connect_ahead(url: str) -> None:
    """Open a reader connection to `url` on a thread and keep it for the first
    adbc_connect, which waits for it rather than opening a second one (_clone's lock)."""

    def connect() -> None:
        # A failure is the first real connection's to report, with its context.
        with contextlib.suppress(Exception):
            adbc_release(adbc_connect(url))

    threading.Thread(target=connect, name="exportflow-connect", daemon=True).start()


def adbc_release(conn: ArrowConnection) -> None:
    """Keep a reader connection for the next export, or close it."""
    conninfo = conn.conninfo
    try:
        conn.rollback()
    except Exception:
        conninfo = None  # ended mid-use: not worth keeping
    with _kept_lock:
        idle = _idle_readers.setdefault(conninfo, []) if conninfo else None
        if idle is not None and len(idle) < _IDLE_KEPT:
            idle.append(conn)
            return
    conn.close()


# Idle control-plane connections kept per URL: a new one costs 5-10 ms, and a direct export
# or a status poll makes two to four short transactions.
_idle: dict[str, list[psycopg.Connection]] = {}
IDLE_IN_TRANSACTION_MS = 30_000  # control-plane transactions last milliseconds
_idle_lock = threading.Lock()


def _reusable(conn: psycopg.Connection) -> bool:
    """Alive and outside any transaction (a server restart leaves it broken)."""
    import psycopg

    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        conn.execute("")  # one round trip: cheaper than a new connection, and sure
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def pooled(url: str) -> Iterator[psycopg.Connection]:
    """pg_connect's transaction (committed on success, rolled back on error) on a kept
    connection when one is idle and alive."""
    import psycopg  # here: a CLI export reads through ADBC alone

    conn = None
    while conn is None:
        with _idle_lock:
            kept = _idle.get(url) and _idle[url].pop()
        if not kept:
            break
        if _reusable(kept):
            conn = kept
        else:
            kept.close()
    if conn is None:
        try:
            # Autocommit, so that the check above opens no transaction: the block's own
            # BEGIN and COMMIT come from conn.transaction().
            conn = psycopg.connect(url, autocommit=True)
            # A process frozen or cut off inside a transaction (a vanished host) would hold
            # its job row's lock until TCP gives up, hours later, and the reconciler's
            # update of that row would wait as long; the server ends such a session instead.
            conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        except psycopg.OperationalError as exc:
            raise SourceUnavailable("the database could not be reached", detail=str(exc)) from exc
    try:
        with conn.transaction():
            yield conn
    except psycopg.OperationalError as exc:
        conn.close()
        # A server restarted or a network cut mid-statement: transient, like a failed
        # connect, so that callers retry or resume instead of failing the export.
        error = classify_db_error(exc)
        if isinstance(error, SourceUnavailable):
            raise error from exc
        raise
    except BaseException:
        conn.close()  # whatever failed may have left it unusable
        raise
    with _idle_lock:
        idle = _idle.setdefault(url, [])
        if len(idle) < _IDLE_KEPT:
            idle.append(conn)
            return
    conn.close()


def close_kept() -> None:
    """Close every connection kept for reuse (a process about to exit)."""
    with _kept_lock:
        readers = [c for idle in _idle_readers.values() for c in idle]
        readers += [base for base, _ in _kept.values()]
        _idle_readers.clear()
        _kept.clear()
    with _idle_lock:
        control = [c for idle in _idle.values() for c in idle]
        _idle.clear()
    for conn in [*readers, *control]:
        with contextlib.suppress(Exception):
            conn.close()
