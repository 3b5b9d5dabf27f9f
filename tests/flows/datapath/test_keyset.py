"""The keyset loop over an in-memory ordered key list: order, sizing, read-ahead, bad bounds."""

from __future__ import annotations

import bisect
from concurrent.futures import Future

import pytest

from flows.control.errors import SourceError
from flows.datapath.keyset import Bound, ChunkSizing, keyset_chunks


class Keys:
    """Answers bound probes like PostgreSQL would over a sorted, unique key column."""

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys
        self.probes: list[tuple] = []

    def next_bound(self, after, limit):
        self.probes.append((after, limit))
        start = 0 if after is None else bisect.bisect_right(self.keys, int(after))
        page = self.keys[start : start + limit]
        return (str(page[-1]), len(page)) if page else None

    def rows(self, bound: Bound) -> list[int]:
        lo = -1 if bound.lo is None else int(bound.lo)
        return [k for k in self.keys if lo < k <= int(bound.hi)]


def done(value) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def run(keys: Keys, sizing: ChunkSizing, row_bytes: int = 10, **kw):
    def submit(bound):
        return done(keys.rows(bound))

    return list(keyset_chunks(keys, submit, sizing, lambda rows: len(rows) * row_bytes, **kw))


def test_every_key_once_in_order_first_chunk_small_then_sized_by_bytes():
    keys = Keys(list(range(1, 1001)))
    sizing = ChunkSizing(max_rows=500, target_bytes=1000, first_rows=30)
    chunks = run(keys, sizing, row_bytes=10)  # 1000 bytes / 10 per row → 100 rows
    assert [k for _, rows in chunks for k in rows] == list(range(1, 1001))
    assert [b.rows for b, _ in chunks] == [30] + [100] * 9 + [70]
    assert [b.index for b, _ in chunks] == list(range(11))
    assert [b.lo for b, _ in chunks[1:]] == [b.hi for b, _ in chunks[:-1]]
    assert chunks[0][0].lo is None and sizing.limit == 100


def test_the_size_never_exceeds_max_rows_nor_drops_below_one():
    wide, narrow = ChunkSizing(50, 10**9), ChunkSizing(50, 10)
    wide.measure(rows=10, nbytes=10)
    narrow.measure(rows=10, nbytes=10**6)
    assert (wide.limit, narrow.limit) == (50, 1)
    empty = ChunkSizing(50, 100)
    empty.measure(rows=0, nbytes=0)
    assert empty.limit == 50
    # One row of 40 bytes: 1000 / 40; rows of no bytes count as one byte each.
    one, free = ChunkSizing(500, 1000), ChunkSizing(500, 300)
    one.measure(rows=1, nbytes=40)
    free.measure(rows=10, nbytes=0)
    assert (one.limit, free.limit) == (25, 300)


def test_first_chunk_is_never_larger_than_max_rows():
    assert ChunkSizing(max_rows=20, target_bytes=100, first_rows=1000).next_limit == 20


def test_resume_continues_after_the_key_with_the_stored_size():
    keys = Keys(list(range(1, 101)))
    sizing = ChunkSizing(max_rows=50, target_bytes=1, first_rows=5, limit=40)
    chunks = run(keys, sizing, after="20", index=3)
    assert [b.index for b, _ in chunks] == [3, 4]
    assert [k for _, rows in chunks for k in rows] == list(range(21, 101))
    assert keys.probes[0] == ("20", 40)


def test_reads_ahead_at_most_ahead_chunks_and_one_until_the_size_is_known():
    keys = Keys(list(range(1, 61)))
    submitted, awaited = [], []

    class Tracked:
        def __init__(self, bound):
            self.bound = bound

        def result(self):
            awaited.append(self.bound.index)
            return keys.rows(self.bound)

    def submit(bound):
        # How many chunks were submitted but not yet awaited when this one is submitted.
        submitted.append(len(submitted) - len(awaited))
        return Tracked(bound)

    sizing = ChunkSizing(max_rows=10, target_bytes=10**9, first_rows=10)
    list(keyset_chunks(keys, submit, sizing, len, ahead=3))
    assert submitted[0] == 0 and submitted[1] == 0  # the first chunk is awaited alone
    assert max(submitted) == 2  # then up to three in flight


def test_no_rows_gives_no_chunks():
    assert run(Keys([]), ChunkSizing(10, 100)) == []


class Broken(Keys):
    def __init__(self, answers):
        super().__init__([])
        self.answers = list(answers)

    def next_bound(self, after, limit):
        return self.answers.pop(0)


@pytest.mark.parametrize("answer", [(None, 5), ("7", 5)], ids=["null bound", "no progress"])
def test_a_bound_that_is_null_or_does_not_advance_stops_the_loop(answer):
    probe = Broken([("7", 5), answer, ("9", 5)])
    sizing = ChunkSizing(max_rows=5, target_bytes=10**9, first_rows=5)
    with pytest.raises(SourceError, match=r"does not advance .* key must be unique and not null"):
        list(keyset_chunks(probe, lambda b: done([0] * b.rows), sizing, len))


def test_pending_reads_are_cancelled_when_the_consumer_stops():
    keys = Keys(list(range(1, 101)))
    futures: list[Future] = []

    def submit(bound):
        # The first two reads finish; the ones after never start on their own.
        futures.append(done(keys.rows(bound)) if len(futures) < 2 else Future())
        return futures[-1]

    sizing = ChunkSizing(max_rows=10, target_bytes=10**9, first_rows=10)
    chunks = keyset_chunks(keys, submit, sizing, len, ahead=2)
    next(chunks), next(chunks)
    assert len(futures) == 3 and not futures[2].cancelled()
    chunks.close()  # the writer failed: the read submitted ahead is not waited for
    assert futures[2].cancelled()
