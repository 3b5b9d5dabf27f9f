"""`exportflow download` and `exportflow jobs` against a real API on loopback, with finished
exports whose files are in the API's storage."""

from __future__ import annotations

import json
import os
from datetime import UTC
from pathlib import Path

from tests.api.conftest import completed_job, new_job
from tests.flows.tools.cli_run import exportflow

DATA = os.urandom(300_000)


def part_of(folder: Path, job) -> Path:
    """Where an unfinished download of `job` waits to be resumed."""
    return folder / f".exportflow-{job.id}.part"


def test_download_resumes_a_partial_file(api, as_user, user, tmp_path: Path):
    job = completed_job(api.rt, user, DATA)
    out = tmp_path / "tags.csv"
    part_of(tmp_path, job).write_bytes(DATA[:100_000])
    run = exportflow(as_user, "download", str(job.id), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == DATA
    assert run.stderr == f"wrote {len(DATA):,} bytes to {out}\n"
    assert not part_of(tmp_path, job).exists()

    # A part that is not a prefix of the file: only its tail is fetched, so the whole
    # fails the sha256 check; the part goes, and the next run starts afresh.
    out.unlink()
    part_of(tmp_path, job).write_bytes(b"x" * 100_000)
    bad = exportflow(as_user, "download", str(job.id), "-o", str(out))
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error [checksum_mismatch]: the file of export {job.id} ")
    assert list(tmp_path.iterdir()) == []
    again = exportflow(as_user, "download", str(job.id), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == DATA

    # A part that is already whole (the last run stopped before the rename) is finished
    # with its last byte, whose answer names the file.
    part_of(tmp_path, job).write_bytes(DATA)
    whole = exportflow(as_user, "download", str(job.id), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    name = f"tags-export-{job.finished_at.astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, "tags.csv"]
    assert (tmp_path / name).read_bytes() == DATA


def test_a_file_that_fails_its_check_never_reaches_the_path(api, as_user, user, tmp_path):
    job = completed_job(api.rt, user, DATA)
    with api.rt.storage.open_write(job.file_key) as f:
        f.write(DATA[:150_000])  # the stored file lost its end after it was recorded
    out = tmp_path / "tags.csv"
    out.write_bytes(b"an older file")
    run = exportflow(as_user, "download", str(job.id), "-o", str(out))
    assert run.returncode == 2
    assert run.stderr.startswith("error [checksum_mismatch]: ")
    assert f"not the recorded {job.sha256}; download it again" in run.stderr
    assert out.read_bytes() == b"an older file"
    assert [p.name for p in tmp_path.iterdir()] == ["tags.csv"]


def test_download_takes_the_servers_name_or_goes_to_stdout(api, as_user, user, tmp_path):
    job = completed_job(api.rt, user, DATA)
    named = exportflow(as_user, "download", str(job.id), cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    name = f"tags-export-{job.finished_at.astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == DATA

    piped = exportflow(as_user, "download", str(job.id), "-o", "-", text=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == DATA
    assert piped.stderr == f"wrote {len(DATA):,} bytes to standard output\n".encode()


def test_download_of_what_has_no_file_is_the_servers_code(api, as_user, user, tmp_path):
    pending = new_job(api.rt, user)
    run = exportflow(as_user, "download", str(pending.id), "-o", str(tmp_path / "x.csv"))
    assert run.returncode == 2
    assert run.stderr == (
        f"error [not_ready]: export {pending.id} is pending and has no file to download\n"
    )
    theirs = completed_job(api.rt, "someone-else", DATA)
    other = exportflow(as_user, "download", str(theirs.id), "-o", str(tmp_path / "x.csv"))
    assert other.returncode == 2 and other.stderr.startswith("error [job_not_found]: ")
    assert list(tmp_path.iterdir()) == []


def test_jobs_lists_pages_and_filters(api, as_user, user):
    done = [completed_job(api.rt, user, DATA) for _ in range(3)]
    waiting = new_job(api.rt, user, module="products")
    newest_first = [str(waiting.id), *(str(j.id) for j in reversed(done))]

    first = exportflow(as_user, "jobs", "--limit", "2")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == newest_first[:2]
    assert lines[1].split()[1:6] == ["products", "csv", "pending", "0", "-"]
    assert lines[2].split()[1:7] == ["tags", "csv", "completed", "3", "293.0", "KiB"]
    assert first.stderr == "more exports are older: --all lists every one\n"

    every = exportflow(as_user, "jobs", "--limit", "2", "--all", "--json")
    assert every.returncode == 0, every.stderr
    page = json.loads(every.stdout)
    assert [i["id"] for i in page["items"]] == newest_first and page["nextCursor"] is None
    assert page["items"][1]["sha256"] == done[-1].sha256

    pending = exportflow(as_user, "jobs", "--status", "pending", "--json")
    assert [i["id"] for i in json.loads(pending.stdout)["items"]] == [str(waiting.id)]
    tags = exportflow(as_user, "jobs", "--module", "tags", "--status", "completed")
    assert [line.split()[0] for line in tags.stdout.splitlines()[1:]] == newest_first[1:]
    assert tags.stderr == ""
