"""One validated plan becomes parameterised SQL: a count, then keyset-paged Arrow batches (ADBC)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import attrgetter
from typing import Any

import pyarrow as pa

from flows.control.connections import adbc_connect, adbc_release
from flows.control.database import classify_db_error
from flows.control.errors import SourceTimeout
from flows.datapath.cursor import bound_query, range_query
from flows.datapath.deadline import Deadline
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks
from flows.datapath.request import ExportPlan
from flows.datapath.sql import (  # noqa: F401  (re-exported: callers build queries from here)
    Query,
    count_query,
    quote_ident,
    select_expr,
)


class Source:
    """A read-only ADBC connection, bounded by the plan's statement timeout, that runs the
    plan's count and chunk queries; with a deadline, no read runs past it either."""

    def __init__(self, url: str, plan: ExportPlan, deadline: Deadline | None = None) -> None:
        self.plan = plan
        self.deadline = deadline
        self.conn = adbc_connect(url, plan.statement_timeout_seconds)

    def close(self) -> None:
        """Give the connection back (kept for the next export while it is healthy)."""
        adbc_release(self.conn)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self) -> int:
        """How many rows the plan selects."""
        q = count_query(self.plan)
        return int(self._fetch(q).column(0)[0].as_py())

    def next_bound(self, after: Any, limit: int, until: Any = None) -> tuple[str, int] | None:
        """(last key, rows) of the chunk after `after` (ending at `until` at the latest);
        None when no rows are left."""
        row = self._fetch(bound_query(self.plan, after, limit, until)).to_pylist()[0]
        return (row["hi"], row["n"]) if row["n"] else None

    def read_range(self, lo: Any, hi: Any) -> pa.Table:
        """The chunk lo < key <= hi as an Arrow table."""
        return self._fetch(range_query(self.plan, lo, hi), ordered=True)

    def _fetch(self, q: Query, ordered: bool = False) -> pa.Table:
        timeout = self.plan.statement_timeout_seconds
        limit = self.deadline.read_ms(timeout) if self.deadline is not None else None
        local = [("statement_timeout", str(limit))] if limit else []
        if ordered:
            # A chunk is a key range read in key order: the key's index gives that order.
            # Left to itself the planner often picks a bitmap scan and a sort instead,
            # which spills to disk at the default work_mem and runs parallel workers on
            # every core: the chunk read twice as slowly, and the writer starved of CPU.
            local.append(("enable_sort", "off"))
        try:
            if local:
                # Local to this read's transaction: the next read sets its own.
                calls = ", ".join(f"set_config('{k}', '{v}', true)" for k, v in local)
                self.conn.query(f"SELECT {calls}")
            if q.params:
                self.conn.query(q.setup, q.params)
            return self.conn.query(q.sql)
        except Exception as exc:
            error = classify_db_error(exc)
            if limit and isinstance(error, SourceTimeout):
                # Stopped by the deadline's bound, not the usual timeout: the deadline says why.
                raise self.deadline.error() from exc
            raise error from exc
        finally:
            # Each chunk is its own short read transaction; nothing is held open between them.
            self._rollback()

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # the connection is gone; the error above already says so
            return


def key_ranges(src: Source, lo: Any, hi: Any, rows: int, limit: int | None) -> Iterator[pa.Table]:
    """The `rows` rows lo < key <= hi as tables of `limit` rows, read one at a time: the
    ranges the CLI reads as its chunks, so both write the same bytes."""
    after = lo
    for _ in range(-(-rows // limit) - 1 if limit else 0):
        found = src.next_bound(after, limit, hi)
        if found is None:
            return  # rows deleted since the bounds were probed: nothing left up to hi
        end = found[0]
        yield src.read_range(after, end)
        if end == hi:
            return
        after = end
    yield src.read_range(after, hi)


def read_chunks(
    url: str,
    plan: ExportPlan,
    sizing: ChunkSizing,
    after: str | None = None,
    readers: int = 2,
    deadline: Deadline | None = None,
    opener: type[Source] = Source,
) -> Iterator[tuple[Bound, pa.Table]]:
    """(bound, Arrow table) of every chunk in key order; `readers` connections read ahead
    while the caller writes, each reusing its connection from chunk to chunk. `opener`
    reads another table keyed by the plan (a related sheet's RelationSource)."""
    local = threading.local()
    sources: list[Source] = []
    lock = threading.Lock()

    def read(bound: Bound) -> pa.Table:
        if not hasattr(local, "src"):
            local.src = opener(url, plan, deadline)
            with lock:
                sources.append(local.src)
        return local.src.read_range(bound.lo, bound.hi)

    # Bounds come from a cheap index-only probe, so the next chunk's read can start
    # before the previous one has arrived: reads overlap on both cores.
    pool = ThreadPoolExecutor(readers, thread_name_prefix="exportflow-reader")
    try:
        with opener(url, plan, deadline) as probe:
            submit = partial(pool.submit, read)
            nbytes = attrgetter("nbytes")
            yield from keyset_chunks(
                probe, submit, sizing, nbytes, after, ahead=readers, deadline=deadline
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for src in sources:
            src.close()
