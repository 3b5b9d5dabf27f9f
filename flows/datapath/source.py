"""One validated plan becomes parameterised SQL: a count, then keyset-paged Arrow batches (ADBC)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

import pyarrow as pa

from flows.control.database import adbc_connect, classify_db_error
from flows.control.registry import Column
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks
from flows.datapath.request import Condition, ExportPlan

# Types Arrow and Polars carry natively; everything else (numeric, uuid, json, arrays,
# intervals, enums, ...) is read as its PostgreSQL text form so it exports faithfully.
NATIVE_TYPES = {
    "smallint", "integer", "bigint", "real", "double precision", "boolean",
    "text", "character varying", "character", "date", "time without time zone",
    "timestamp with time zone", "timestamp without time zone",
}  # fmt: skip
_SQL_OPS = {"eq": "=", "gte": ">=", "lte": "<=", "lt": "<"}


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier; `schema.table` is quoted part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def select_expr(column: Column) -> str:
    """How a column is read so that Arrow gets a faithful value."""
    col = quote_ident(column.name)
    is_domain = not column.pg_type.startswith(column.base_type)
    if column.base_type in NATIVE_TYPES and not is_domain:
        return col
    if column.base_type.endswith("[]"):
        return f"array_to_json({col})::text AS {col}"
    return f"{col}::text AS {col}"


@dataclass(frozen=True)
class Query:
    """SQL text and the values it reads through `current_setting('exportflow.pN')`."""

    sql: str
    params: tuple[str, ...]

    @property
    def setup(self) -> str:
        """The statement that binds the values ($1, $2, ...) for this transaction."""
        calls = (
            f"set_config('exportflow.p{n}', ${n}, true)" for n in range(1, len(self.params) + 1)
        )
        return f"SELECT {', '.join(calls)}"


class _Params:
    """Values are bound, never written into SQL. They are bound to transaction-local
    settings rather than to the data query itself: PostgreSQL only streams a query with
    COPY when it has no parameters, and COPY reads twice as fast."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def ref(self, value: str) -> str:
        self.values.append(value)
        return f"current_setting('exportflow.p{len(self.values)}')"

    def bind(self, value: str, pg_type: str) -> str:
        return f"CAST({self.ref(value)} AS {pg_type})"

    def bind_list(self, values: list[str], pg_type: str) -> str:
        items = f"jsonb_array_elements_text(CAST({self.ref(json.dumps(values))} AS jsonb))"
        return f"ARRAY(SELECT CAST(v AS {pg_type}) FROM {items} AS v)"


def _where(conditions: list[Condition], params: _Params) -> list[str]:
    terms = []
    for c in conditions:
        col = quote_ident(c.column)
        if c.op == "contains":
            pattern = c.values[0].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            ref = params.bind(pattern, "text")
            terms.append(f"{col}::text ILIKE '%' || {ref} || '%' ESCAPE '\\'")
        elif c.op == "in":
            terms.append(f"{col} = ANY({params.bind_list(c.values, c.pg_type)})")
        else:
            terms.append(f"{col} {_SQL_OPS[c.op]} {params.bind(c.values[0], c.pg_type)}")
    return terms


def count_query(plan: ExportPlan) -> Query:
    """SELECT count(*) for the plan's rows."""
    params = _Params()
    terms = _where(plan.conditions, params)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    sql = f"SELECT count(*) AS n FROM {quote_ident(plan.dataset.table)}{where}"
    return Query(sql, tuple(params.values))


def _keyset_terms(plan: ExportPlan, params: _Params, lo: Any, hi: Any = None) -> list[str]:
    ds = plan.dataset
    terms = _where(plan.conditions, params)
    key = quote_ident(ds.key)
    if lo is not None:
        terms.append(f"{key} > {params.bind(str(lo), ds.key_type)}")
    if hi is not None:
        terms.append(f"{key} <= {params.bind(str(hi), ds.key_type)}")
    return terms


def bound_query(plan: ExportPlan, after: Any, limit: int) -> Query:
    """The last key and row count of the next `limit` rows after `after` (index only)."""
    params = _Params()
    terms = _keyset_terms(plan, params, after)
    key = quote_ident(plan.dataset.key)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    inner = (
        f"SELECT {key} AS k FROM {quote_ident(plan.dataset.table)}{where}"
        f" ORDER BY {key} LIMIT {int(limit)}"
    )
    return Query(
        f"SELECT max(k)::text AS hi, count(*) AS n FROM ({inner}) AS page", tuple(params.values)
    )


def range_query(plan: ExportPlan, lo: Any, hi: Any) -> Query:
    """The rows with lo < key <= hi (lo None: from the start), in key order."""
    ds = plan.dataset
    params = _Params()
    terms = _keyset_terms(plan, params, lo, hi)
    key = quote_ident(ds.key)
    cols = [select_expr(c) for c in plan.columns]
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    sql = f"SELECT {', '.join(cols)} FROM {quote_ident(ds.table)}{where} ORDER BY {key}"
    return Query(sql, tuple(params.values))


class Source:
    """An ADBC connection that runs a plan's count and chunk queries."""

    def __init__(self, url: str, plan: ExportPlan) -> None:
        self.plan = plan
        self.conn = adbc_connect(url)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self) -> int:
        """How many rows the plan selects."""
        q = count_query(self.plan)
        return int(self._fetch(q).column(0)[0].as_py())

    def next_bound(self, after: Any, limit: int) -> tuple[str, int] | None:
        """(last key, rows) of the chunk after `after`; None when no rows are left."""
        row = self._fetch(bound_query(self.plan, after, limit)).to_pylist()[0]
        return (row["hi"], row["n"]) if row["n"] else None

    def read_range(self, lo: Any, hi: Any) -> pa.Table:
        """The chunk lo < key <= hi as an Arrow table."""
        return self._fetch(range_query(self.plan, lo, hi))

    def _fetch(self, q: Query) -> pa.Table:
        try:
            with self.conn.cursor() as cur:
                if q.params:
                    cur.execute(q.setup, q.params)
                    cur.fetchall()
                cur.execute(q.sql)
                return cur.fetch_arrow_table()
        except Exception as exc:
            raise classify_db_error(exc) from exc
        finally:
            # Each chunk is its own short read transaction; nothing is held open between them.
            self._rollback()

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # the connection is gone; the error above already says so
            return


def read_chunks(
    url: str, plan: ExportPlan, sizing: ChunkSizing, after: str | None = None, readers: int = 2
) -> Iterator[tuple[Bound, pa.Table]]:
    """(bound, Arrow table) of every chunk in key order; `readers` connections read ahead
    while the caller writes, each reusing its connection from chunk to chunk."""
    local = threading.local()
    sources: list[Source] = []
    lock = threading.Lock()

    def read(bound: Bound) -> pa.Table:
        if not hasattr(local, "src"):
            local.src = Source(url, plan)
            with lock:
                sources.append(local.src)
        return local.src.read_range(bound.lo, bound.hi)

    # Bounds come from a cheap index-only probe, so the next chunk's read can start
    # before the previous one has arrived: reads overlap on both cores.
    pool = ThreadPoolExecutor(readers, thread_name_prefix="exportflow-reader")
    try:
        with Source(url, plan) as probe:
            submit = partial(pool.submit, read)
            nbytes = attrgetter("nbytes")
            yield from keyset_chunks(probe, submit, sizing, nbytes, after, ahead=readers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for src in sources:
            src.close()
