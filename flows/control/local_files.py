"""Local files written to be kept: their bytes reach the disk while they are written."""

from __future__ import annotations

import os
from typing import BinaryIO

# Left to the kernel, a 200 MB export sits in the page cache until the final fsync, which
# then waited ~0.11 s for all of it; started every 8 MiB, the writeback runs beside the
# export and the fsync finds little left (PostgreSQL does the same: backend_flush_after).
WRITEBACK_BYTES = 8 << 20


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk, without waiting for it."""
    # Python has no sync_file_range; on Linux POSIX_FADV_DONTNEED starts the same
    # asynchronous writeback (PostgreSQL's fallback) and drops only pages already clean.
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class WriteBehind:
    """A binary file whose written bytes go to disk every WRITEBACK_BYTES; fsync still
    decides durability, it just finds little left to do."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._start = self._end = f.tell()

    def write(self, data) -> int:
        """Write; start the writeback of what has piled up."""
        n = self._f.write(data)
        self._end += n
        if self._end - self._start >= WRITEBACK_BYTES:
            self._f.flush()
            start_writeback(self._f.fileno(), self._start, self._end - self._start)
            self._start = self._end
        return n

    def __getattr__(self, name: str):
        return getattr(self._f, name)
