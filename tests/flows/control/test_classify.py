"""Driver errors as the driver raises them (psycopg's classes by SQLSTATE, ADBC's with
their SQLSTATE attribute), classified without a server: retried or not, and what users
are told."""

from __future__ import annotations

import adbc_driver_manager
import psycopg
import pytest

from flows.control.database import classify_db_error, sqlstate_of
from flows.control.errors import SourceError, SourceTimeout, SourceUnavailable


def adbc_error(text: str, sqlstate: str | None) -> Exception:
    return adbc_driver_manager.OperationalError(
        text,
        status_code=adbc_driver_manager.AdbcStatusCode.IO,
        vendor_code=None,
        sqlstate=sqlstate,
        details=None,
    )


class NamedSqlState(Exception):
    """A driver error that names its SQLSTATE `sql_state`."""

    def __init__(self, text: str, sql_state: str) -> None:
        super().__init__(text)
        self.sql_state = sql_state


def test_an_adbc_error_without_a_sqlstate_reads_its_text():
    lost = adbc_error("server closed the connection unexpectedly", "\x00\x00\x00\x00\x00")
    assert sqlstate_of(lost) == ""
    err = classify_db_error(lost)
    assert type(err) is SourceUnavailable
    assert err.detail == "[no sqlstate] OperationalError: server closed the connection unexpectedly"


def test_a_sqlstate_named_sql_state_is_read_too():
    err = classify_db_error(NamedSqlState("canceling statement", "57014"))
    assert type(err) is SourceTimeout
    assert err.detail == "[57014] NamedSqlState: canceling statement"
    assert sqlstate_of(NamedSqlState("x", " 40001 ")) == "40001"


@pytest.mark.parametrize(
    ("sqlstate", "kind", "message"),
    [
        ("57014", SourceTimeout, "the export's query ran longer than the statement timeout allows"),
        ("53300", SourceError, "the database ran out of resources (memory, disk or connections)"),
        ("42703", SourceError, "a column or table used by this export no longer exists"),
        ("42P01", SourceError, "a column or table used by this export no longer exists"),
        (
            "22003",
            SourceError,
            "the database could not compute a value of this export (a data error)",
        ),
        ("25006", SourceError, "the connection is read-only and the statement tried to write"),
        ("42501", SourceError, "the database refused the export permission to read this table"),
        ("42601", SourceError, "the database refused the export's query"),
        ("08001", SourceUnavailable, "the database could not be reached"),
        ("40P01", SourceUnavailable, "the database could not be reached"),
    ],
)
def test_psycopg_errors_read_as_plain_sentences(sqlstate, kind, message):
    exc = psycopg.errors.lookup(sqlstate)("secret text from the server")
    err = classify_db_error(exc)
    assert type(err) is kind and err.message == message
    assert err.detail == f"[{sqlstate}] {type(exc).__name__}: secret text from the server"
    assert err.transient is (kind is SourceUnavailable)
