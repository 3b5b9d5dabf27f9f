"""The one keyset loop: chunk bounds probed in key order, chunks read ahead, results in order.

The CLI, the API and the Prefect flow all drive this loop; they differ only in what
`submit` does with a chunk (read it on a thread, or run it as a task)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flows.control.errors import SourceError
from flows.control.settings import Settings
from flows.datapath.deadline import Deadline


class Future(Protocol):
    """What `submit` returns: a thread pool future or a Prefect task future."""

    def result(self) -> Any: ...


class BoundProbe(Protocol):
    """Something that answers (last key, rows) of the next `limit` rows after a key."""

    def next_bound(self, after: Any, limit: int) -> tuple[str | None, int] | None: ...


@dataclass(frozen=True)
class Bound:
    """One keyset chunk: rows with lo < key <= hi, in key order."""

    index: int
    lo: str | None
    hi: str
    rows: int


@dataclass
class ChunkSizing:
    """Rows per chunk, sized by bytes: the first chunk is small, the rest hold about
    `target_bytes` of Arrow data each (never more than `max_rows` rows). The size comes
    from the first chunk alone, so a resumed run bounds its chunks as the first run did."""

    max_rows: int
    target_bytes: int
    first_rows: int = 1000
    limit: int | None = None
    ranges: int = 1

    @classmethod
    def from_settings(
        cls, settings: Settings, limit: int | None = None, ranges: int = 1
    ) -> ChunkSizing:
        """The configured sizing; `limit` restores one measured before (a resumed run);
        after the first, each chunk spans `ranges` ranges of `limit` rows."""
        first = settings.first_chunk_rows
        return cls(settings.chunk_rows, settings.chunk_bytes, first, limit, ranges)

    @property
    def next_limit(self) -> int:
        """Rows to bound the next chunk with."""
        if self.limit:
            return self.limit * self.ranges
        return min(self.first_rows, self.max_rows)

    def measure(self, rows: int, nbytes: int) -> None:
        """Fix the chunk size from the first chunk's rows and Arrow bytes."""
        per_row = max(nbytes / max(rows, 1), 1.0)
        self.limit = max(1, min(self.max_rows, int(self.target_bytes / per_row)))


def keyset_chunks(
    probe: BoundProbe,
    submit: Callable[[Bound], Future],
    sizing: ChunkSizing,
    nbytes: Callable[[Any], int],
    after: str | None = None,
    index: int = 0,
    ahead: int = 2,
    deadline: Deadline | None = None,
) -> Iterator[tuple[Bound, Any]]:
    """(bound, result of `submit(bound)`) for every chunk after `after`, in key order.

    `ahead` chunks are submitted before the oldest one's result is awaited; until the
    chunk size is known only one is. A bound that is NULL or does not advance stops
    the loop with an error instead of repeating a chunk or looping for ever; so does a
    deadline that passes, between chunks."""
    pending: deque[tuple[Bound, Future]] = deque()
    lo, more = after, True
    try:
        while more or pending:
            if deadline is not None:
                deadline.check()
            while more and len(pending) < (ahead if sizing.limit else 1):
                limit = sizing.next_limit
                found = probe.next_bound(lo, limit)
                if found is None:
                    more = False
                    break
                hi, rows = found
                if hi is None or hi == lo:
                    raise SourceError(
                        f"the key does not advance after {lo!r} (next bound {hi!r}); "
                        "the module's key must be unique and not null"
                    )
                bound = Bound(index, lo, hi, rows)
                pending.append((bound, submit(bound)))
                lo, index, more = hi, index + 1, rows == limit
            if pending:
                bound, future = pending.popleft()
                held = [future.result()]
                del future
                if sizing.limit is None:
                    sizing.measure(bound.rows, nbytes(held[0]))
                # Handed over, not kept: this frame holds no reference while the caller
                # transforms and writes the chunk.
                yield bound, held.pop()
    finally:
        for _, future in pending:
            # Threads' futures can be cancelled before they start; Prefect's tasks cannot.
            if hasattr(future, "cancel"):
                future.cancel()
