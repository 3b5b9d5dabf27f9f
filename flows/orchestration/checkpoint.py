"""Resuming a background export: chunk files in storage, and the checkpoint that lists them.

Each chunk a run reads (one or several key ranges) is stored as a chunk file until the
whole file is assembled. A resumed run reuses the chunk files its checkpoint lists: CSV
chunks are stored encoded and other formats as their ranges' frames, assembled through
the same deterministic writer, so the file is byte-identical to an uninterrupted run's
(and to the CLI's). Chunk files live under the plan's fingerprint, so runs under two
different plans never share one.

Related sheets are read after the module's rows, each with its own keyset loop: their
chunks follow the module's in the checkpoint, marked with the relation's name (their
`section`), numbered and sized per relation, and stored as frames (`tags-chunk-N`). A
resumed run resumes each table after its last stored chunk."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import polars as pl

from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.datapath.engine import ExportResult, HashingSink
from flows.datapath.relations import relation_plans
from flows.datapath.request import ExportPlan
from flows.datapath.writers import make_writer, zipped_csv
from flows.datapath.writers.xlsx import BLOCK_ROWS

_COPY_BLOCK = 8 * 2**20
# Rows per stored XLSX frame: the assembler decodes one at a time beside the readers'
# ranges. The writer's blocks, so the file is the same as from the range written whole.
_FRAME_ROWS = BLOCK_ROWS
# Bump when the bytes a chunk file holds change for the same plan and settings.
CHUNK_FORMAT = 4
_WRITER_SETTINGS = ("chunk_rows", "chunk_bytes", "first_chunk_rows", "gzip_level")
_WRITER_SETTINGS += ("xlsx_sheet_rows",)
Frames = Iterable[pl.DataFrame]


def plan_fingerprint(plan: ExportPlan, settings: Settings) -> str:
    """What decides a chunk file's bytes: the plan (dataset, types, columns, conditions,
    request) and the writer settings."""
    options = {name: getattr(settings, name) for name in _WRITER_SETTINGS}
    text = json.dumps(
        [CHUNK_FORMAT, plan.model_dump(mode="json"), options], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def job_temp_prefix(job_id: str) -> str:
    """Where all of a job's chunk files live, whatever their plan."""
    return f"tmp/{job_id}/"


def final_key(job_id: str, module: str, extension: str) -> str:
    """The key of the finished file."""
    return f"exports/{job_id}/{module}.{extension}"


def job_file_prefix(job_id: str) -> str:
    """Where a job's finished file lives."""
    return f"exports/{job_id}/"


@dataclass(frozen=True)
class ChunkFiles:
    """One job's chunk files under one plan."""

    storage: Storage
    job_id: str
    fingerprint: str

    def key(self, index: int, section: str | None = None) -> str:
        """The key of chunk `index` (of the related sheet `section`)."""
        name = f"{section}-chunk" if section else "chunk"
        return f"{job_temp_prefix(self.job_id)}{self.fingerprint[:16]}/{name}-{index:06d}"

    def write(
        self,
        settings: Settings,
        plan: ExportPlan,
        index: int,
        frames: Frames,
        section: str | None = None,
    ) -> int:
        """Store one chunk (the frames of its key ranges, in order), committed only when
        complete: CSV already encoded (chunks are independent of each other, so assembly
        only concatenates), other formats as the frames themselves (Arrow IPC, lz4, each
        after its length), for the writer to encode in order at assembly."""
        rows = 0
        with self.storage.open_write(self.key(index, section)) as f:
            writer = None
            if encoded(plan):
                neutralise = plan.dataset.neutralise_formulas
                writer = make_writer(plan.request, plan.columns, settings, neutralise=neutralise)
            # A zipped CSV decides its quoting per frame: its frames stay whole.
            whole = plan.request.format != "xlsx"
            for df in frames:
                rows += df.height
                if writer is not None:
                    f.write(writer.encode(df))
                else:
                    for part in [df] if whole else df.iter_slices(_FRAME_ROWS):
                        buf = io.BytesIO()
                        part.write_ipc(buf, compression="lz4")
                        f.write(buf.tell().to_bytes(8, "little"))
                        f.write(buf.getbuffer())
                del df  # not held while the next range is read
        return rows

    def frames(self, index: int, section: str | None = None) -> Iterator[pl.DataFrame]:
        """One chunk's frames, as written, one at a time."""
        with self.storage.open_read(self.key(index, section)) as f:
            while size := int.from_bytes(f.read(8), "little"):
                yield pl.read_ipc(io.BytesIO(f.read(size)))

    def exists(self, index: int, section: str | None = None) -> bool:
        """Whether chunk `index` is stored."""
        return self.storage.exists(self.key(index, section))


def encoded(plan: ExportPlan) -> bool:
    """Whether chunk files hold encoded bytes to concatenate (a plain CSV), not frames."""
    return plan.request.format == "csv" and not zipped_csv(plan.request)


@dataclass
class Checkpoint:
    """Chunks whose files are stored, in key order; resume after `last_key` with chunks of
    `limit` rows (measured by the first chunk, so a resumed run bounds them the same)."""

    fingerprint: str
    chunks: list[dict] = field(default_factory=list)
    limit: int | None = None
    limits: dict[str, int] = field(default_factory=dict)  # each related sheet's chunk size

    @classmethod
    def load(cls, raw: dict | None, fingerprint: str) -> Checkpoint:
        """From the job row; one written under another plan or writer options starts over,
        so a file never joins chunks written under two plans."""
        raw = raw or {}
        if raw.get("fingerprint") != fingerprint:
            return cls(fingerprint)
        chunks, limits = list(raw.get("chunks", [])), dict(raw.get("limits", {}))
        return cls(fingerprint, chunks, raw.get("limit"), limits)

    def _last(self, section: str | None) -> dict | None:
        return next((c for c in reversed(self.chunks) if c.get("section") == section), None)

    def next_index_of(self, section: str | None) -> int:
        """The index of the table's next chunk."""
        last = self._last(section)
        return last["index"] + 1 if last else 0

    def last_key_of(self, section: str | None) -> str | None:
        """Where the table's next chunk starts."""
        last = self._last(section)
        return last["hi"] if last else None

    @property
    def next_index(self) -> int:
        """The index of the module's next chunk."""
        return self.next_index_of(None)

    @property
    def last_key(self) -> str | None:
        """Where the module's next chunk starts."""
        return self.last_key_of(None)

    @property
    def rows(self) -> int:
        """Rows in stored chunks."""
        return sum(c["rows"] for c in self.chunks)

    def keep_existing(self, files: ChunkFiles) -> None:
        """Drop chunks from the first one whose file is missing onwards."""
        for n, chunk in enumerate(self.chunks):
            if not files.exists(chunk["index"], chunk.get("section")):
                del self.chunks[n:]
                break
        if not self.chunks:
            self.limit = None
        kept = {c.get("section") for c in self.chunks}
        self.limits = {s: n for s, n in self.limits.items() if s in kept}

    def add(
        self, index: int, lo: str | None, hi: str, rows: int, section: str | None = None
    ) -> None:
        """Record a stored chunk (of the related sheet `section`)."""
        chunk = {"index": index, "lo": lo, "hi": hi, "rows": rows}
        self.chunks.append(chunk | ({"section": section} if section else {}))

    def to_dict(self) -> dict:
        """For the job row."""
        out = {"fingerprint": self.fingerprint, "chunks": self.chunks, "limit": self.limit}
        return out | ({"limits": self.limits} if self.limits else {})


def assemble(
    files: ChunkFiles, settings: Settings, plan: ExportPlan, chunks: Iterable[dict], key: str
) -> ExportResult:
    """Write the chunks, in order and as they come, into `key`, committed when complete."""
    neutralise = plan.dataset.neutralise_formulas
    with (
        make_writer(plan.request, plan.columns, settings, neutralise=neutralise) as writer,
        files.storage.open_write(key) as f,
    ):
        out, rows = HashingSink(f), 0
        if encoded(plan):
            out.write(writer.preamble())
            for chunk in chunks:
                rows += chunk["rows"]
                with files.storage.open_read(files.key(chunk["index"])) as src:
                    while block := src.read(_COPY_BLOCK):
                        out.write(block)
        else:
            writer.open(out)
            # Each related sheet starts when its first chunk comes, or at the end if empty.
            later, current = relation_plans(plan), None
            for chunk in chunks:
                section = chunk.get("section")
                while section != current and later:
                    rp = later.pop(0)
                    writer.add_sheet(rp.title, rp.columns)
                    current = rp.name
                rows += chunk["rows"]
                for df in files.frames(chunk["index"], section):
                    writer.write(df)
            for rp in later:
                writer.add_sheet(rp.title, rp.columns)
            writer.close()
    return ExportResult(rows=rows, bytes=out.bytes, sha256=out.hexdigest())
