"""Part files: each chunk kept in storage until the file is assembled.

A resumed run reuses the parts it finds; CSV parts are the chunk's encoded bytes and
other formats' parts are the chunk's frame, assembled through the same deterministic
writer, so the file is byte-identical to an uninterrupted run's (and to the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from flows.engine import ExportResult, HashingSink
from flows.request import ExportPlan
from flows.settings import Settings
from flows.storage import Storage
from flows.writers import make_writer

_COPY_BLOCK = 8 * 2**20


def parts_prefix(job_id: str) -> str:
    """Where a job's parts live."""
    return f"tmp/{job_id}/"


def part_key(job_id: str, index: int) -> str:
    """The key of one chunk's part."""
    return f"{parts_prefix(job_id)}part-{index:06d}"


def final_key(job_id: str, module: str, extension: str) -> str:
    """The key of the finished file."""
    return f"exports/{job_id}/{module}.{extension}"


def write_part(
    storage: Storage,
    settings: Settings,
    plan: ExportPlan,
    job_id: str,
    index: int,
    df: pl.DataFrame,
) -> int:
    """Store one chunk, committed only when complete: CSV chunks already encoded (they
    are independent of each other, so assembly only concatenates), other formats as the
    frame itself (Arrow IPC, lz4), for the writer to encode in order at assembly."""
    with storage.open_write(part_key(job_id, index)) as f:
        if plan.request.format == "csv":
            f.write(make_writer(plan.request, plan.columns, settings).encode(df))
        else:
            df.write_ipc(f, compression="lz4")
    return df.height


def read_part(storage: Storage, job_id: str, index: int) -> pl.DataFrame:
    """One chunk's frame, as written."""
    with storage.open_read(part_key(job_id, index)) as f:
        return pl.read_ipc(f)


@dataclass
class Checkpoint:
    """Chunks whose parts are stored, in key order; resume after `last_key`."""

    chunk_rows: int
    parts: list[dict]
    attempts: int = 0

    @classmethod
    def load(cls, raw: dict | None, chunk_rows: int) -> Checkpoint:
        """From the job row; a different chunk size starts over (bounds would differ)."""
        if not raw or raw.get("chunk_rows") != chunk_rows:
            return cls(chunk_rows, [], (raw or {}).get("attempts", 0))
        return cls(chunk_rows, list(raw.get("parts", [])), raw.get("attempts", 0))

    @property
    def last_key(self) -> str | None:
        """Where the next chunk starts."""
        return self.parts[-1]["hi"] if self.parts else None

    @property
    def rows(self) -> int:
        """Rows in stored parts."""
        return sum(p["rows"] for p in self.parts)

    def keep_existing(self, storage: Storage, job_id: str) -> None:
        """Drop parts from the first one that is missing from storage onwards."""
        for n, part in enumerate(self.parts):
            if not storage.exists(part_key(job_id, part["index"])):
                del self.parts[n:]
                return

    def add(self, index: int, lo: str | None, hi: str, rows: int) -> None:
        """Record a stored part."""
        self.parts.append({"index": index, "lo": lo, "hi": hi, "rows": rows})

    def to_dict(self) -> dict:
        """For the job row."""
        return {"chunk_rows": self.chunk_rows, "parts": self.parts, "attempts": self.attempts}


def assemble(
    storage: Storage, settings: Settings, plan: ExportPlan, job_id: str, parts: list[dict], key: str
) -> ExportResult:
    """Write the parts, in order, into `key`, committed when complete."""
    writer = make_writer(plan.request, plan.columns, settings)
    with storage.open_write(key) as f:
        out = HashingSink(f)
        if plan.request.format == "csv":
            out.write(writer.preamble())
            for part in parts:
                with storage.open_read(part_key(job_id, part["index"])) as src:
                    while block := src.read(_COPY_BLOCK):
                        out.write(block)
        else:
            writer.open(out)
            for part in parts:
                writer.write(read_part(storage, job_id, part["index"]))
            writer.close()
    rows = sum(part["rows"] for part in parts)
    return ExportResult(rows=rows, bytes=out.bytes, sha256=out.hash.hexdigest())
