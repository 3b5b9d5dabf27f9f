"""The catalog queries of the start-up check, on a reader's ADBC connection.

The check runs on the connection the first read then reuses, so a CLI export opens one
connection and loads one driver. Parameters go as text and are cast in the SQL; oids
come back as bigint (ADBC reads `oid` as a signed 32-bit integer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from flows.control.arrow_conn import ArrowConnection
from flows.control.connections import adbc_connect, adbc_release
from flows.control.database import classify_db_error
from flows.control.errors import DatasetConfigError, SourceUnavailable

RELATION = """
SELECT c.oid::bigint, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""

# typbasetype of a domain over a domain names the inner domain, not the base type:
# walk down to the base, keeping the first modifier met (a domain's own typtypmod).
COLUMNS = """
WITH RECURSIVE walk AS (
    SELECT a.attnum, a.atttypid AS tid, a.atttypmod AS mod, 0 AS depth
    FROM pg_attribute a
    WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT w.attnum, t.typbasetype, CASE WHEN w.mod = -1 THEN t.typtypmod ELSE w.mod END,
           w.depth + 1
    FROM walk w JOIN pg_type t ON t.oid = w.tid
    WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (w.attnum)
       a.attname::text, format_type(a.atttypid, a.atttypmod), format_type(w.tid, NULL),
       b.typcategory::text, format_type(w.tid, w.mod),
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
        FROM pg_enum e WHERE e.enumtypid = w.tid)
FROM walk w
JOIN pg_type b ON b.oid = w.tid
JOIN pg_attribute a ON a.attrelid = $1::oid AND a.attnum = w.attnum
ORDER BY w.attnum, w.depth DESC
"""

# Keyset paging skips NULLs and repeats or loses rows on duplicates: the key must be
# NOT NULL with a unique, valid, single-column index that covers every row.
KEY = """
SELECT a.attnotnull,
       EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indisvalid
                 AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
                 AND i.indpred IS NULL AND i.indexprs IS NULL)
FROM pg_attribute a
WHERE a.attrelid = $1::oid AND a.attname = $2::name AND NOT a.attisdropped
"""

# Valid, non-partial btree indexes; an expression column has no name and ends the usable part.
INDEXES = """
SELECT array_agg(coalesce(a.attname::text, '') ORDER BY k.n), array_agg(k.opt ORDER BY k.n)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indoption::int2[]) WITH ORDINALITY AS k(att, opt, n)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att AND k.att > 0
WHERE i.indrelid = $1::oid AND i.indisvalid AND i.indpred IS NULL AND k.n <= i.indnkeyatts
GROUP BY i.indexrelid
ORDER BY i.indexrelid
"""

# The columns of a composite key that may hold NULL.
NULLABLE = """
SELECT array_agg(attname::text) FROM pg_attribute
WHERE attrelid = $1::oid AND attname = ANY($2::text[]) AND NOT attnotnull
"""

# A composite key is unique when a valid, total, unique index covers exactly its columns.
UNIQUE = """
SELECT EXISTS (
    SELECT 1 FROM pg_index i
    WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid
      AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = $2::int
      AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
           FROM pg_attribute a
           WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey[0:i.indnkeyatts - 1]))
          = $3::text[]
)
"""


def _text(value: Any) -> str:
    """A parameter as PostgreSQL reads it from text: a list as an array literal."""
    if isinstance(value, list | tuple):
        quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "{" + ",".join(quoted) + "}"
    return str(value)


class Catalog:
    """Catalog rows as tuples of Python values."""

    def __init__(self, conn: ArrowConnection) -> None:
        self.conn = conn

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        """Every row of `sql`."""
        table = self.conn.query(sql, [_text(p) for p in params])
        return list(zip(*(c.to_pylist() for c in table.columns), strict=True))

    def row(self, sql: str, *params: Any) -> tuple | None:
        """The first row of `sql`, None if none."""
        rows = self.rows(sql, *params)
        return rows[0] if rows else None


@contextlib.contextmanager
def catalog(url: str) -> Iterator[Catalog]:
    """The catalog of the database `url`, read on a kept reader connection."""
    conn = adbc_connect(url)
    try:
        yield Catalog(conn)
    finally:
        adbc_release(conn)


Fail = Callable[[str, str], DatasetConfigError]


def resolve(cat: Catalog, table: str, fail: Fail) -> tuple[int, str, str, list[tuple]]:
    """(oid, quoted name, relkind, column rows) of `table`; `fail(field, message)` builds
    the error for a name that is not a table's or a table that does not exist."""
    try:
        found = cat.row(RELATION, table)
    except Exception as exc:
        error = classify_db_error(exc)
        if isinstance(error, SourceUnavailable):
            raise error from exc
        cat.conn.rollback()
        raise fail("table", f"{table!r} is not a table name") from exc
    if found is None:
        raise fail("table", f"table {table} does not exist")
    oid, quoted, kind = found
    return oid, quoted, kind, cat.rows(COLUMNS, oid)
