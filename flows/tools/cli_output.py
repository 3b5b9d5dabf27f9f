"""Where `exportflow export` writes (the -o file, checked first, or stdout) and its progress."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from flows.control.errors import (
    ExportflowError,
    InvalidOutput,
    StorageError,
    StorageFull,
)

STDOUT = "-"
T = TypeVar("T")


class ProgressBar:
    """Rows done / total and rate on stderr, redrawn at most five times a second."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.start = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int, final: bool = False) -> None:
        """Redraw; `total` 0 means not known yet."""
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        if total:
            pct = 100 * done / total
            fill = int(30 * pct / 100)
            line = f"[{'#' * fill}{'-' * (30 - fill)}] {done:,}/{total:,} rows {pct:5.1f}%"
        else:
            line = f"[{'?' * 30}] {done:,} rows"
        self.stream.write(f"\r{line} {rate:,.0f} rows/s")
        self.drawn = not final
        if final:
            self.stream.write("\n")
        self.stream.flush()

    def end(self) -> None:
        """End a bar left mid-line (an error or an interrupt), so what follows starts afresh."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def check_output(text: str, name: str, binary: bool) -> Path | None:
    """The file to write (None: stdout), else InvalidOutput suggesting `name`; creates nothing."""
    if text in (STDOUT, "/dev/stdout"):
        if binary and sys.stdout.isatty():
            raise InvalidOutput(
                "this format is binary and standard output is a terminal; "
                "redirect it (> file) or pipe it, or use -o FILE"
            )
        return None
    path = Path(text)
    folder = path.parent
    if path.exists() and not path.is_dir() and not path.is_file():
        return path  # a device or a named pipe: written in place, nothing to rename
    if path.is_dir():
        raise InvalidOutput(f"{text} is a folder; name a file in it, e.g. -o {path / name}")
    if not folder.exists():
        raise InvalidOutput(
            f"folder {folder} does not exist; create it first (mkdir -p {folder}) "
            "or choose another -o"
        )
    if not folder.is_dir():
        raise InvalidOutput(f"{folder} is not a folder; choose an -o inside a folder")
    try:
        # Mode bits say little (root ignores them, a read-only mount ignores them all):
        # only creating a file tells whether the final rename will work.
        tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe").close()
    except OSError as exc:
        raise InvalidOutput(
            f"cannot write in folder {folder} ({exc.strerror}); choose an -o in a writable folder"
        ) from None
    return path


@contextlib.contextmanager
def open_output(path: Path | None) -> Iterator[BinaryIO]:
    """The sink: a file that appears only when complete, or standard output's bytes."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            yield f
        return
    from flows.control.storage import atomic_local_file

    with atomic_local_file(path) as f:
        yield f


def output_error(exc: OSError, path: Path | None) -> ExportflowError:
    """What a failed write of the output means for the operator."""
    where = "standard output" if path is None else str(path)
    # Writers in native code re-raise a plain OSError that names the errno only in its text.
    found = re.match(r"\[Errno (\d+)\]", str(exc))
    code = exc.errno if exc.errno is not None else (int(found[1]) if found else None)
    if code == errno.EPIPE:
        # The reader went away (`| head`); silence the flush Python attempts at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return InvalidOutput(f"{where} was closed before the export ended")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left writing {where}; free some or use another -o")
    return StorageError(f"cannot write {where}: {exc.strerror or exc}")


def write_output(path: Path | None, write: Callable[[BinaryIO], T], bar: ProgressBar | None) -> T:
    """`write(sink)` into the output; a failed write becomes an error saying what to change."""
    try:
        with open_output(path) as sink:
            return write(sink)
    except BaseException as exc:
        if bar is not None:
            bar.end()
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise
