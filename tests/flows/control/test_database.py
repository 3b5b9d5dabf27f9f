"""Connections: the embedded PostgreSQL found again after its starter died; driver errors
from real failures classified as retryable or not, with plain public messages."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from flows.control import connections
from flows.control.connections import adbc_connect, adbc_release, pooled
from flows.control.database import (
    READER_APPLICATION_NAME,
    classify_db_error,
    sqlstate_of,
)
from flows.control.errors import SourceError, SourceTimeout, SourceUnavailable


def db(env: dict, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "flows.tools.cli", "db", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_embedded_server_is_reused_then_stopped(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTFLOW_")}
    env["EXPORTFLOW_DATA_DIR"] = str(tmp_path / "data")
    url = db(env, "url")
    with psycopg.connect(url) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = int((tmp_path / "data/pg/postmaster.pid").read_text().split()[0])
    assert pid != postmaster
    # A starter killed outright leaves the server running; the next start must reuse it.
    starter = subprocess.Popen(
        [sys.executable, "-m", "flows.tools.cli", "db", "url"], env=env, stdout=subprocess.PIPE
    )
    starter.wait(60)
    os.kill(postmaster, 0)
    assert db(env, "url") == url
    assert int((tmp_path / "data/pg/postmaster.pid").read_text().split()[0]) == postmaster
    assert db(env, "stop") == "stopped"
    assert not (tmp_path / "data/pg/postmaster.pid").exists()
    assert db(env, "stop") == "no embedded server running"


# --- Errors from real failures: which are retried, and what users are told ---------------


def adbc_failure(url: str, sql: str, timeout: float | None = None) -> Exception:
    """The error a real ADBC read of `sql` raises, classified."""
    conn = adbc_connect(url, timeout)
    try:
        conn.query(sql)
    except Exception as exc:
        return classify_db_error(exc)
    finally:
        conn.close()
    raise AssertionError(f"{sql} did not fail")


def psycopg_failure(url: str, sql: str) -> Exception:
    """The error a real psycopg execution of `sql` raises, classified."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)
    except psycopg.Error as exc:
        return classify_db_error(exc)
    raise AssertionError(f"{sql} did not fail")


def raising(sqlstate: str) -> str:
    return f"DO $$BEGIN RAISE EXCEPTION 'secret detail' USING ERRCODE = '{sqlstate}'; END$$"


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("08006", SourceUnavailable),  # connection failure
        ("57P01", SourceUnavailable),  # admin shutdown
        ("57P02", SourceUnavailable),  # crash shutdown
        ("57P03", SourceUnavailable),  # cannot connect now
        ("40001", SourceUnavailable),  # serialization failure
        ("40P01", SourceUnavailable),  # deadlock
        ("57014", SourceTimeout),  # statement timeout / query canceled
        ("53100", SourceError),  # disk full
        ("53200", SourceError),  # out of memory
        ("42703", SourceError),  # undefined column
        ("42P01", SourceError),  # undefined table
        ("22012", SourceError),  # division by zero
        ("57000", SourceError),  # operator intervention, not listed
        ("XX000", SourceError),  # internal error, not listed
    ],
)
@pytest.mark.parametrize("driver", ["adbc", "psycopg"])
def test_sqlstates_are_classified_from_an_explicit_list(db_url, sqlstate, kind, driver):
    fail = adbc_failure if driver == "adbc" else psycopg_failure
    err = fail(db_url, raising(sqlstate))
    assert type(err) is kind
    assert err.transient is (kind is SourceUnavailable)
    assert "secret detail" not in err.message and sqlstate in err.detail
    assert "secret detail" in err.detail
    if kind is SourceTimeout:
        assert err.code == "timeout"


def test_real_failures_read_as_plain_sentences(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE VIEW broken_ratio AS SELECT 1 / (g - g) AS r FROM generate_series(1, 3) g"
        )
    for err in (
        adbc_failure(db_url, "SELECT * FROM broken_ratio"),
        psycopg_failure(db_url, "SELECT * FROM broken_ratio"),
    ):
        assert type(err) is SourceError and not err.transient
        assert "division by zero" in err.detail and "division" not in err.message
    err = adbc_failure(db_url, "SELECT no_such_column FROM broken_ratio")
    assert err.message == "a column or table used by this export no longer exists"
    assert "no_such_column" in err.detail
    err = adbc_failure(db_url, "SELECT pg_sleep(5)", timeout=0.2)
    assert type(err) is SourceTimeout and err.code == "timeout"


def test_an_unreachable_server_is_transient_and_names_no_host(db_url):
    url = make_conninfo(db_url, host="127.0.0.1", port="1", connect_timeout="3")
    with pytest.raises(SourceUnavailable) as info:
        adbc_connect(url)
    assert info.value.message == "the database could not be reached"
    assert "127.0.0.1" in info.value.detail
    err = psycopg_failure(url, "SELECT 1")
    assert type(err) is SourceUnavailable and "127.0.0.1" not in err.message


def test_a_bare_word_connection_is_not_a_lost_connection():
    err = classify_db_error(RuntimeError("invalid connection option 'foo'"))
    assert type(err) is SourceError
    lost = classify_db_error(RuntimeError("server closed the connection unexpectedly"))
    assert type(lost) is SourceUnavailable
    refused = classify_db_error(RuntimeError('connection to server at "h" (1.2.3.4) failed'))
    assert type(refused) is SourceUnavailable and "1.2.3.4" not in refused.message


def terminate_when_waiting(db_url: str, application_name: str) -> None:
    """Wait until a backend of `application_name` waits on a lock, then terminate it."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        for _ in range(200):
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND datname = current_database() AND wait_event_type = 'Lock'",
                (application_name,),
            ).fetchone()
            if row:
                admin.execute("SELECT pg_terminate_backend(%s)", row)
                return
            time.sleep(0.05)
    raise AssertionError(f"no backend of {application_name} waited on the lock")


@pytest.mark.parametrize("driver", ["adbc", "psycopg"])
def test_a_connection_terminated_mid_read_is_transient(db_url, driver):
    name = READER_APPLICATION_NAME if driver == "adbc" else "exportflow-terminate-test"
    sql = "SELECT pg_advisory_xact_lock_shared(424242)"
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(424242)")
        killer = threading.Thread(target=terminate_when_waiting, args=(db_url, name))
        killer.start()
        if driver == "adbc":
            err = adbc_failure(db_url, sql)
        else:
            err = psycopg_failure(make_conninfo(db_url, application_name=name), sql)
        killer.join()
    assert type(err) is SourceUnavailable and err.transient
    assert err.message == "the database could not be reached"


def test_a_connection_killed_between_reads_is_transient_without_sqlstate(db_url):
    conn = adbc_connect(db_url)
    try:
        pid = conn.query("SELECT pg_backend_pid()").column(0)[0].as_py()
        conn.rollback()
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        with pytest.raises(Exception) as info:
            conn.query("SELECT 1")
    finally:
        conn.close()
    # libpq reports it with no SQLSTATE: recognised by its own words.
    assert sqlstate_of(info.value) == ""
    err = classify_db_error(info.value)
    assert type(err) is SourceUnavailable and "server closed" in err.detail


def test_a_kept_connection_the_server_ended_is_replaced_not_used(db_url):
    with pooled(db_url) as conn:
        first = conn.info.backend_pid
    with pooled(db_url) as conn:
        assert conn.info.backend_pid == first  # kept, not reconnected
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
    with pooled(db_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid != first


def test_a_transaction_left_idle_is_ended_by_the_server(db_url, monkeypatch):
    # A process frozen mid-transaction must not hold a job row's lock for hours.
    with pooled(db_url) as conn:
        timeout = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0]
    assert timeout == "30s"
    monkeypatch.setattr(connections, "IDLE_IN_TRANSACTION_MS", 500)
    url = make_conninfo(db_url, application_name="idle-probe")  # a pool of its own
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout), pooled(url) as conn:
        conn.execute("SELECT 1")
        time.sleep(2)
        conn.execute("SELECT 1")


def test_a_failed_block_rolls_back_and_its_connection_is_not_kept(db_url):
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS pooled_probe (v int)")
    with pytest.raises(psycopg.errors.DivisionByZero), pooled(db_url) as conn:
        conn.execute("INSERT INTO pooled_probe VALUES (1)")
        failed = conn.info.backend_pid
        conn.execute("SELECT 1 / 0")
    with pooled(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pooled_probe").fetchone() == (0,)
        assert conn.info.backend_pid != failed
        conn.execute("DROP TABLE pooled_probe")


def _one(conn, sql: str):
    value = conn.query(sql).column(0)[0].as_py()
    conn.rollback()
    return value


def test_a_reader_is_kept_for_the_next_export_without_its_timeout(db_url):
    first = adbc_connect(db_url, 42)
    pid = _one(first, "SELECT pg_backend_pid()")
    adbc_release(first)
    again = adbc_connect(db_url)
    try:
        assert _one(again, "SELECT pg_backend_pid()") == pid
        assert _one(again, "SELECT current_setting('statement_timeout')") == "0"
    finally:
        adbc_release(again)


def test_a_type_created_after_a_reader_was_kept_reads_as_itself(db_url):
    adbc_release(adbc_connect(db_url))  # a kept reader that knows today's types
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("DROP TYPE IF EXISTS late_mood; CREATE TYPE late_mood AS ENUM ('ok')")
    conn = adbc_connect(db_url)
    try:
        table = conn.query("SELECT 'ok'::late_mood AS m")
        # An unknown type would arrive as opaque bytes, not the label.
        assert table.column("m").to_pylist() == ["ok"]
    finally:
        adbc_release(conn)
