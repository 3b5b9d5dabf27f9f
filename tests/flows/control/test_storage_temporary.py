"""Temporary files: cleanup sees only the project's own names; a prefix is a folder (both backends)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.control.storage_keys import chunk_job_id, is_temporary
from flows.orchestration.checkpoint import ChunkFiles, job_temp_prefix

JOB = str(uuid.UUID(int=0x3F1C1C437C1E4C579D3E2B8F3A6F0C11))
HEX = "0123456789abcdef" * 2


def part_key(job_id: str, index: int) -> str:
    """A chunk file key as a run writes it."""
    return ChunkFiles(None, job_id, HEX * 2).key(index)


parts_prefix = job_temp_prefix

# Under the root but not ours: a user's notes, look-alikes, other folders.
FOREIGN = [
    "tmp/notes.txt",
    f"tmp/{JOB}/other",
    f"tmp/{JOB}/part-1",
    f"tmp/{JOB}/part-000000",
    f"tmp/{JOB}/{HEX[:16]}/other",
    f"tmp/{JOB}/{HEX[:15]}/chunk-000000",
    f"tmp/{JOB}/part-000001.bak",
    f"tmp/{JOB}/sub/part-000000",
    f"tmp/{JOB.upper()}/part-000000",
    "tmp/not-a-uuid/part-000000",
    f"tmp/{JOB}x/part-000000",
    f"old/tmp/{JOB}/part-000000",
    f"exports/{JOB}/products.csv",
    ".tmp/notes.txt",
    ".tmp/.report.csv.part",
    f".tmp/.report.csv.{HEX[:31]}.part",
    f".tmp/sub/.report.csv.{HEX}.part",
    f".tmp/report.csv.{HEX}.part",
    "part-000000",
]
OURS = [part_key(JOB, 0), part_key(JOB, 7), part_key(JOB, 1_234_567), f".tmp/.p.csv.{HEX}.part"]


@pytest.mark.parametrize(
    "key, job",
    [(part_key(JOB, 0), JOB), (part_key(JOB, 1_000_000), JOB)]
    + [(key, None) for key in [*FOREIGN, f".tmp/.p.csv.{HEX}.part"]],
)
def test_chunk_job_id(key: str, job: str | None):
    assert chunk_job_id(key) == job
    assert is_temporary(key) == (job is not None or key in OURS)


@pytest.fixture(params=["local", "s3"])
def seeded(request, tmp_path: Path) -> Storage:
    """A storage of each kind holding foreign files and the project's temporary ones."""
    if request.param == "s3":
        store = Storage.from_settings(request.getfixturevalue("s3_settings"))
    else:
        store = Storage.from_settings(
            Settings(_env_file=None, data_dir=tmp_path, storage_url="exports")
        )
    for key in FOREIGN + OURS:
        with store.open_write(key) as f:
            f.write(key.encode())
    return store


def test_list_temporary_lists_only_the_projects_names(seeded: Storage):
    started = time.time()
    found = seeded.list_temporary()
    assert [key for key, _ in found] == sorted(OURS)
    assert all(started - 600 < stamp <= time.time() + 5 for _, stamp in found)
    assert sorted(key for key, _ in seeded.list("")) == sorted(FOREIGN + OURS)


def test_an_unfinished_local_write_is_listed_as_temporary(tmp_path: Path):
    store = Storage.from_settings(Settings(_env_file=None, data_dir=tmp_path))
    with store.open_write("exports/x/report.csv") as f:
        f.write(b"half")
        f.flush()
        (unfinished,) = store.list_temporary()
        assert unfinished[0].startswith(".tmp/.report.csv.") and is_temporary(unfinished[0])
    assert store.list_temporary() == []


def test_delete_prefix_stays_inside_its_folder(seeded: Storage):
    other = str(uuid.uuid4())
    near = [f"tmp/{JOB}x/part-000000", f"tmp/{JOB[:-1]}/part-000000", f"tmp/{JOB}.bak"]
    if seeded.scheme == "s3":  # an object may share its name with a folder's prefix
        near.append(f"tmp/{JOB}")
    for key in [*near, part_key(other, 0)]:
        with seeded.open_write(key) as f:
            f.write(b"near")
    before = {key for key, _ in seeded.list("")}
    inside = {key for key in before if key.startswith(f"tmp/{JOB}/")}
    assert len(inside) == 10  # the 3 chunk files and 7 foreign files under it

    assert seeded.delete_prefix(f"tmp/{JOB}") == len(inside)  # no slash: still the folder
    assert {key for key, _ in seeded.list("")} == before - inside
    assert seeded.delete_prefix(parts_prefix(JOB)) == 0
    assert all(seeded.exists(key) for key in near)
    assert [key for key, _ in seeded.list_temporary()] == [OURS[-1], part_key(other, 0)]


def test_s3_chunk_files_listed_and_deleted_by_prefix(s3_settings: Settings, s3_server):
    store = Storage.from_settings(s3_settings)
    jobs = [str(uuid.uuid4()) for _ in range(2)]
    for job in jobs:
        for index in range(4):
            with store.open_write(part_key(job, index)) as f:
                f.write(f"{job}:{index}".encode() * 1000)
    listed = [key for key, _ in store.list_temporary()]
    assert listed == sorted(part_key(job, i) for job in jobs for i in range(4))
    assert [chunk_job_id(key) for key in listed] == sorted(jobs * 4)

    assert store.delete_prefix(parts_prefix(jobs[0])) == 4
    assert [key for key, _ in store.list_temporary()] == [part_key(jobs[1], i) for i in range(4)]
    s3 = s3_server.client()
    held = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=store.root.split("/", 1)[1] + "/")
    assert sorted(o["Key"].split("/", 1)[1] for o in held["Contents"]) == [
        part_key(jobs[1], i) for i in range(4)
    ]
