"""Chunk files on a local folder store (no database, no Prefect): a resumed run keeps only
chunks whose files are still there, and assembling the chunks gives the very bytes an
uninterrupted run writes."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import polars as pl
import pytest

from flows.control.registry import ColumnType, Dataset, Registry
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.datapath.request import ExportRequest, plan_export
from flows.datapath.writers import make_writer
from flows.orchestration.checkpoint import (
    Checkpoint,
    ChunkFiles,
    assemble,
    final_key,
    job_file_prefix,
    job_temp_prefix,
    plan_fingerprint,
)

JOB = "3f1c1c43-7c1e-4c57-9d3e-2b8f3a6f0c11"
REGISTRY = Registry(
    modules={
        "items": Dataset(
            name="items",
            table="items",
            key="code",
            permission="p",
            columns={"code": "Code", "n": None, "note": "Note"},
            types={
                "code": ColumnType(pg_type="text"),
                "n": ColumnType(pg_type="integer"),
                "note": ColumnType(pg_type="text"),
            },
        )
    }
)
CHUNKS = [
    pl.DataFrame({"Code": ["a", "b"], "n": [1, 2], "Note": ["x", "=1+1"]}),
    pl.DataFrame({"Code": ["c"], "n": [3], "Note": ['say "hi", then go']}),
    pl.DataFrame({"Code": ["d", "e", "f"], "n": [4, None, 6], "Note": [None, "", "z"]}),
]


def plan_of(settings: Settings, **request):
    return plan_export(ExportRequest(module="items", **request), REGISTRY, settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", xlsx_sheet_rows=4, gzip_level=1)


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


def uninterrupted(settings: Settings, plan) -> bytes:
    """The file a run that never stopped writes: one writer over every chunk in order."""
    buf = io.BytesIO()
    writer = make_writer(plan.request, plan.columns, settings)
    writer.open(buf)
    for df in CHUNKS:
        writer.write(df)
    writer.close()
    return buf.getvalue()


def stored_chunks(files: ChunkFiles, settings: Settings, plan) -> list[dict]:
    checkpoint = Checkpoint(files.fingerprint)
    lo = None
    for index, df in enumerate(CHUNKS):
        assert files.write(settings, plan, index, [df]) == df.height
        hi = df["Code"][-1]
        checkpoint.add(index, lo, hi, df.height)
        lo = hi
    return checkpoint.chunks


@pytest.mark.parametrize(
    "request_options",
    [
        {"format": "csv"},
        {"format": "csv", "delimiter": ";", "bom": True},
        {"format": "csv", "header": False},
        {"format": "csv", "gzip": True},
        {"format": "xlsx"},
    ],
    ids=["csv", "csv-options", "csv-no-header", "csv-gzip", "xlsx"],
)
def test_assembled_file_is_byte_identical_to_an_uninterrupted_run(
    settings: Settings, storage: Storage, request_options: dict
):
    plan = plan_of(settings, **request_options)
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    chunks = stored_chunks(files, settings, plan)
    key = final_key(JOB, "items", plan.request.format)
    result = assemble(files, settings, plan, chunks, key)

    expected = uninterrupted(settings, plan)
    with storage.open_read(key) as f:
        written = f.read()
    assert written == expected
    assert result.rows == 6 and result.bytes == len(expected)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()


def test_an_assembled_csv_has_one_header_and_every_row_in_order(
    settings: Settings, storage: Storage
):
    plan = plan_of(settings)
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    chunks = stored_chunks(files, settings, plan)
    assemble(files, settings, plan, chunks, "exports/out.csv")
    with storage.open_read("exports/out.csv") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode())))
    assert rows[0] == ["Code", "n", "Note"]
    assert [r[0] for r in rows[1:]] == ["a", "b", "c", "d", "e", "f"]
    assert rows[3] == ["c", "3", 'say "hi", then go']


def test_assembly_uses_only_the_listed_chunks_in_their_order(settings, storage):
    plan = plan_of(settings)
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    chunks = stored_chunks(files, settings, plan)
    result = assemble(files, settings, plan, chunks[:2], "exports/two.csv")
    with storage.open_read("exports/two.csv") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode())))
    assert [r[0] for r in rows[1:]] == ["a", "b", "c"] and result.rows == 3


def test_a_chunk_file_reads_back_as_the_frames_written(settings, storage):
    plan = plan_of(settings, format="xlsx")
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    assert not files.exists(2)
    assert files.write(settings, plan, 2, CHUNKS[1:3]) == CHUNKS[1].height + CHUNKS[2].height
    assert files.exists(2) and not files.exists(1)
    back = list(files.frames(2))
    assert len(back) == 2 and back[0].equals(CHUNKS[1]) and back[1].equals(CHUNKS[2])
    assert storage.exists(f"{job_temp_prefix(JOB)}{files.fingerprint[:16]}/chunk-000002")


def test_a_resumed_run_keeps_chunks_up_to_the_first_missing_file(settings, storage):
    plan = plan_of(settings)
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    checkpoint = Checkpoint(files.fingerprint, stored_chunks(files, settings, plan), limit=2)
    storage.delete(files.key(1))
    checkpoint.keep_existing(files)
    assert [c["index"] for c in checkpoint.chunks] == [0]
    assert (checkpoint.last_key, checkpoint.next_index, checkpoint.limit) == ("b", 1, 2)

    storage.delete(files.key(0))
    checkpoint.keep_existing(files)
    assert (checkpoint.chunks, checkpoint.limit, checkpoint.next_index) == ([], None, 0)


def test_a_checkpoint_whose_files_all_exist_is_kept_whole(settings, storage):
    plan = plan_of(settings)
    files = ChunkFiles(storage, JOB, plan_fingerprint(plan, settings))
    checkpoint = Checkpoint(files.fingerprint, stored_chunks(files, settings, plan), limit=2)
    checkpoint.keep_existing(files)
    assert [c["index"] for c in checkpoint.chunks] == [0, 1, 2] and checkpoint.limit == 2
    assert checkpoint.rows == 6 and checkpoint.last_key == "f"


def test_the_fingerprint_changes_with_what_decides_a_chunks_bytes(settings: Settings):
    base = plan_fingerprint(plan_of(settings), settings)
    assert len(base) == 64 and base == plan_fingerprint(plan_of(settings), settings)
    changed = [
        plan_fingerprint(plan_of(settings, format="xlsx"), settings),
        plan_fingerprint(plan_of(settings, delimiter=";"), settings),
        plan_fingerprint(plan_of(settings, columns=["code", "n"]), settings),
        plan_fingerprint(plan_of(settings, ids=["a"]), settings),
        plan_fingerprint(plan_of(settings, timezone="Europe/Berlin"), settings),
    ]
    for name, value in [
        ("chunk_rows", 7),
        ("chunk_bytes", 1000),
        ("first_chunk_rows", 3),
        ("gzip_level", 9),
        ("xlsx_sheet_rows", 99),
    ]:
        other = settings.model_copy(update={name: value})
        changed.append(plan_fingerprint(plan_of(settings), other))
    assert len({base, *changed}) == 1 + len(changed)


def test_the_fingerprint_ignores_how_rows_are_read(settings: Settings):
    base = plan_fingerprint(plan_of(settings), settings)
    slower = settings.model_copy(update={"statement_timeout_seconds": 5, "read_connections": 1})
    assert plan_fingerprint(plan_of(slower), slower) == base


def test_finished_files_and_chunk_files_live_apart():
    assert final_key(JOB, "items", "csv") == f"exports/{JOB}/items.csv"
    assert final_key(JOB, "items", "csv").startswith(job_file_prefix(JOB))
    assert job_temp_prefix(JOB) == f"tmp/{JOB}/"
