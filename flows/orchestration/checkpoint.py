"""Part files: each chunk kept in storage until the file is assembled.

A resumed run reuses the parts it finds; CSV parts are the chunk's encoded bytes and
other formats' parts are the chunk's frame, assembled through the same deterministic
writer, so the file is byte-identical to an uninterrupted run's (and to the CLI's)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import polars as pl

from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.datapath.engine import ExportResult, HashingSink
from flows.datapath.request import ExportPlan
from flows.datapath.writers import make_writer

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


# Bump when the bytes a chunk file holds change for the same plan and settings.
CHUNK_FORMAT = 1
_WRITER_SETTINGS = (
    "chunk_rows",
    "chunk_bytes",
    "first_chunk_rows",
    "gzip_level",
    "xlsx_sheet_rows",
)


def plan_fingerprint(plan: ExportPlan, settings: Settings) -> str:
    """What decides a chunk file's bytes: the plan (dataset, types, columns, conditions,
    request) and the writer settings."""
    options = {name: getattr(settings, name) for name in _WRITER_SETTINGS}
    text = json.dumps(
        [CHUNK_FORMAT, plan.model_dump(mode="json"), options], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Checkpoint:
    """Chunks whose files are stored, in key order; resume after `last_key` with chunks of
    `limit` rows (measured by the first chunk, so a resumed run bounds them the same)."""

    fingerprint: str
    parts: list[dict]
    limit: int | None = None
    attempts: int = 0

    @classmethod
    def load(cls, raw: dict | None, fingerprint: str) -> Checkpoint:
        """From the job row; one written under another plan or writer options starts over,
        so a file never joins chunks written under two plans."""
        raw = raw or {}
        attempts = raw.get("attempts", 0)
        if raw.get("fingerprint") != fingerprint:
            return cls(fingerprint, [], None, attempts)
        return cls(fingerprint, list(raw.get("parts", [])), raw.get("limit"), attempts)

    @property
    def next_index(self) -> int:
        """The index of the next chunk."""
        return self.parts[-1]["index"] + 1 if self.parts else 0

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
                break
        if not self.parts:
            self.limit = None

    def add(self, index: int, lo: str | None, hi: str, rows: int) -> None:
        """Record a stored part."""
        self.parts.append({"index": index, "lo": lo, "hi": hi, "rows": rows})

    def to_dict(self) -> dict:
        """For the job row."""
        return {
            "fingerprint": self.fingerprint,
            "parts": self.parts,
            "limit": self.limit,
            "attempts": self.attempts,
        }


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
