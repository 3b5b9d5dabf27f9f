"""The data path end to end: count, keyset chunks, transform, writer, into one sink."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import BinaryIO

from flows.control.settings import Settings
from flows.datapath.deadline import Deadline
from flows.datapath.keyset import ChunkSizing
from flows.datapath.relations import RelationSource, count_related, relation_plans
from flows.datapath.request import ExportPlan
from flows.datapath.source import Source, read_chunks
from flows.datapath.transform import Transform
from flows.datapath.writers import make_writer

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    rows: int
    bytes: int
    sha256: str | None  # None when the caller asked for no digest


class HashingSink:
    """Passes writes through while counting bytes and, unless `digest` is off, hashing them."""

    def __init__(self, sink: BinaryIO, digest: bool = True) -> None:
        self.sink = sink
        self.bytes = 0
        self.hash = hashlib.sha256() if digest else None

    def write(self, data: bytes) -> int:
        """Write, count, hash."""
        if self.hash is not None:
            self.hash.update(data)
        self.bytes += len(data)
        return self.sink.write(data)

    def hexdigest(self) -> str | None:
        """The sha256 of everything written, if hashed."""
        return None if self.hash is None else self.hash.hexdigest()


def count_rows(url: str, plan: ExportPlan, deadline: Deadline | None = None) -> int:
    """How many rows the plan exports, its related sheets' rows included."""
    with Source(url, plan, deadline) as src:
        rows = src.count()
    return rows + count_related(url, plan, deadline) if plan.request.relations else rows


def export(
    url: str,
    plan: ExportPlan,
    sink: BinaryIO,
    settings: Settings,
    on_progress: Progress | None = None,
    deadline: Deadline | None = None,
    digest: bool = True,
) -> ExportResult:
    """Write the plan's rows to `sink` in the request's format; `digest=False` skips the
    sha256 (a sixth of a CSV's writing time) where nobody records it.

    A failure part-way (reading, transforming, writing, or in the sink) stops the
    reads ahead and releases the writer's threads and temporary files before it
    propagates; the sink holds a partial file, which the caller discards. Past the
    `deadline` the export fails with its SourceTimeout: checked between chunks, and
    every read (the count too) is stopped by the database when the deadline comes."""
    neutralise = plan.dataset.neutralise_formulas
    readers = settings.read_connections
    # The module's rows, then each related sheet's, each table its own keyset loop (and
    # chunk sizing): read one after the other, so memory is that of one table's reads.
    tables = [(plan, Source, None)] + [(rp, RelationSource, rp) for rp in relation_plans(plan)]
    # The count only feeds the progress figure: it runs beside the first reads, not before,
    # and not at all when nobody reports progress (the API's direct and streamed exports).
    with (
        ThreadPoolExecutor(1, thread_name_prefix="exportflow-count") as pool,
        make_writer(plan.request, plan.columns, settings, neutralise=neutralise) as writer,
    ):
        total = pool.submit(count_rows, url, plan, deadline) if on_progress else None
        out = HashingSink(sink, digest)
        writer.open(out)
        done = 0
        for table_plan, opener, related in tables:
            if related is not None:
                writer.add_sheet(related.title, related.columns)
            sizing = ChunkSizing.from_settings(settings)
            chunks = read_chunks(
                url, table_plan, sizing, readers=readers, deadline=deadline, opener=opener
            )
            transform = Transform(table_plan)
            with closing(chunks):
                for _, table in chunks:
                    done += table.num_rows
                    frame = transform(table)
                    del table  # a chunk's Arrow and Polars copies are not held into the next read
                    writer.write(frame)
                    del frame
                    if on_progress and total is not None:
                        # 0 until the count is in: the total is not known yet.
                        on_progress(done, max(total.result(), done) if total.done() else 0)
        writer.close()
    return ExportResult(rows=done, bytes=out.bytes, sha256=out.hexdigest())
