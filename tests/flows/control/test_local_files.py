"""Local files written behind: every byte lands where it was written, resumed files too."""

from __future__ import annotations

import os
from pathlib import Path

from flows.control.local_files import WRITEBACK_BYTES, WriteBehind
from flows.control.settings import Settings
from flows.control.storage import Storage, atomic_local_file

# Blocks of an odd size, so that the writeback thresholds fall inside blocks.
BLOCK = 3 * 1024 * 1024 + 17


def blocks(total: int) -> list[bytes]:
    data = os.urandom(total)
    return [data[i : i + BLOCK] for i in range(0, total, BLOCK)]


def test_a_stored_file_spanning_many_writebacks_is_whole(tmp_path: Path):
    storage = Storage.from_settings(Settings(_env_file=None, storage_url=str(tmp_path)))
    parts = blocks(3 * WRITEBACK_BYTES + 12345)
    with storage.open_write("exports/a/big.csv") as f:
        for part in parts:
            assert f.write(part) == len(part)
    assert (tmp_path / "exports/a/big.csv").read_bytes() == b"".join(parts)


def test_an_atomic_local_file_is_whole(tmp_path: Path):
    parts = blocks(2 * WRITEBACK_BYTES + 1)
    with atomic_local_file(tmp_path / "out.csv") as f:
        for part in parts:
            f.write(part)
    assert (tmp_path / "out.csv").read_bytes() == b"".join(parts)


def test_a_file_resumed_mid_way_keeps_its_head_and_gets_its_tail(tmp_path: Path):
    path = tmp_path / "download.part"
    head = os.urandom(WRITEBACK_BYTES // 2 + 3)
    path.write_bytes(head + b"stale tail, cut off before resuming")
    tail = blocks(2 * WRITEBACK_BYTES)
    with path.open("r+b") as raw:
        raw.seek(len(head))
        raw.truncate()
        f = WriteBehind(raw)
        for part in tail:
            f.write(part)
        assert f.tell() == len(head) + sum(map(len, tail))
    assert path.read_bytes() == head + b"".join(tail)
