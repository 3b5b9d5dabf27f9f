"""A PostgreSQL connection that answers queries as Arrow tables, on ADBC's own layer.

ADBC's DB-API module imports `pyarrow.dataset`, which imports pandas: half a second and
~85 MiB in every process that reads, a flow-run process's start included. The data path
needs four calls of it, which this module makes on `adbc_driver_manager` directly.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence

import adbc_driver_manager as adbc
import adbc_driver_postgresql
import pyarrow as pa

# Runs a driver call so that Ctrl-C (or a run's cancellation) cancels the statement
# instead of waiting for it: what the DB-API layer does around every call.
from adbc_driver_manager._lib import _blocking_call
from adbc_driver_manager._reader import AdbcRecordBatchReader


def _text(value: str) -> pa.StringArray:
    """A one-value text array, built from its buffers: `pa.array` and `pa.record_batch`
    first ask whether their input is a pandas object, which imports pandas."""
    data = value.encode()
    offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
    return pa.StringArray.from_buffers(1, offsets, pa.py_buffer(data))


class _Database:
    """An ADBC database (the driver's connection settings and type cache) closed once
    the last connection made from it is closed."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.db = adbc_driver_postgresql.connect(conninfo)
        self.users = 0
        self.lock = threading.Lock()

    def acquire(self) -> adbc.AdbcConnection:
        with self.lock:
            conn = adbc.AdbcConnection(self.db)
            self.users += 1
        return conn

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                self.db.close()


class ArrowConnection:
    """One connection in manual-commit mode: `query` returns a whole result as Arrow."""

    def __init__(self, database: _Database) -> None:
        self._database = database
        self.conninfo = database.conninfo
        self._conn = database.acquire()
        self.closed = False
        try:
            self._conn.set_autocommit(False)
        except BaseException:
            self.close()
            raise

    @classmethod
    def connect(cls, conninfo: str) -> ArrowConnection:
        """A connection on a database of its own; `clone` shares it."""
        return cls(_Database(conninfo))

    def clone(self) -> ArrowConnection:
        """A new connection sharing this one's database (no new type-cache load)."""
        return ArrowConnection(self._database)

    def query(self, sql: str, params: Sequence[str] = ()) -> pa.Table:
        """The result of `sql`, its $1.. bound to the text values `params`."""
        stmt = adbc.AdbcStatement(self._conn)
        try:
            stmt.set_sql_query(sql)
            if params:
                names = [f"p{i}" for i in range(len(params))]
                stmt.bind(pa.RecordBatch.from_arrays([_text(p) for p in params], names=names))
            handle, _ = _blocking_call(stmt.execute_query, (), {}, stmt.cancel)
            reader = AdbcRecordBatchReader._import_from_c(handle.address)
            try:
                return _blocking_call(reader.read_all, (), {}, stmt.cancel)
            finally:
                reader.close()
        finally:
            stmt.close()

    def commit(self) -> None:
        """End the open transaction, keeping its work."""
        self._conn.commit()

    def rollback(self) -> None:
        """End the open transaction, undoing it."""
        self._conn.rollback()

    def close(self) -> None:
        """Close the connection (and the database with its last connection)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._conn.close()
        finally:
            self._database.release()
