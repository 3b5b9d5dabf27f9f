"""export_flow and the orphan sweep storing on a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from flows.orchestration import export_flow as module
from flows.orchestration.checkpoint import job_temp_prefix
from flows.orchestration.cleanup_flow import cleanup_flow, remove_orphans
from flows.orchestration.export_flow import export_flow
from tests.flows.helpers import (
    CHUNK_ROWS,
    CHUNKS,
    RUN_TIMEOUT,
    chunk_runs,
    in_background,
    new_job,
    reference,
    set_row,
    started,
    stored,
)


def bucket_prefix(rt) -> str:
    """This test's prefix in the bucket."""
    return rt.storage.root.split("/", 1)[1]


def assert_nothing_pending(rt, s3_server) -> None:
    """No object left under tmp/ and no multipart upload left open, as S3 itself lists them."""
    client, bucket, prefix = s3_server.client(), s3_server.bucket, bucket_prefix(rt)
    assert client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/tmp/")["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []) == []


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_to_s3_gives_the_reference_file(rt_s3, s3_server, fmt):
    job = new_job(rt_s3, format=fmt, gzip=fmt == "csv")
    state = export_flow(str(job.id), return_state=True)
    assert state.is_completed(), state.message
    done = rt_s3.jobs.get(job.id)
    assert done.file_key == f"exports/{job.id}/products.{'csv.gz' if fmt == 'csv' else 'xlsx'}"
    data = stored(rt_s3, done.file_key)
    assert data == reference(rt_s3, done)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (done.file_bytes, done.sha256)
    head = s3_server.client().head_object(
        Bucket=s3_server.bucket, Key=f"{bucket_prefix(rt_s3)}/{done.file_key}"
    )
    assert head["ContentLength"] == len(data)
    assert_nothing_pending(rt_s3, s3_server)


def test_resume_on_s3_reads_only_chunks_after_the_checkpoint(rt_s3, s3_server, monkeypatch):
    monkeypatch.setattr(rt_s3.settings, "chunk_rows", CHUNK_ROWS)
    monkeypatch.setattr(module.export_chunk, "retry_delay_seconds", [0])
    job = new_job(rt_s3, format="csv", gzip=True)
    run = in_background(export_flow, str(job.id), return_state=True)
    started(rt_s3, job)
    # The run is taken for lost and superseded; its chunk files stay for the next attempt.
    at = rt_s3.jobs.next_attempt(job.id, 0)
    assert run.result(RUN_TIMEOUT).name == "Superseded"
    kept = len(at.checkpoint["chunks"])
    assert 0 < kept < CHUNKS and rt_s3.storage.list(job_temp_prefix(str(job.id)))
    resumed = export_flow(str(job.id), return_state=True)
    assert resumed.is_completed(), resumed.message
    assert sorted(chunk_runs(resumed.state_details.flow_run_id)) == list(range(kept, CHUNKS))
    done = rt_s3.jobs.get(job.id)
    assert stored(rt_s3, done.file_key) == reference(rt_s3, done)
    assert_nothing_pending(rt_s3, s3_server)


def test_orphan_sweep_on_s3(rt_s3, monkeypatch):
    def put(job_id: str) -> str:
        key = f"{job_temp_prefix(job_id)}{'f' * 16}/chunk-000000"
        with rt_s3.storage.open_write(key) as f:
            f.write(b"part")
        return key

    running = new_job(rt_s3)
    set_row(rt_s3, running.id, "status = 'processing'")
    running_part, orphan = put(str(running.id)), put(str(uuid.uuid4()))
    # S3 keeps its own modification times, to the second: age the first two for real.
    time.sleep(3)
    young = put(str(uuid.uuid4()))
    monkeypatch.setattr(rt_s3.settings, "orphan_max_age_seconds", 2)
    assert cleanup_flow()["orphans"] == 1
    assert not rt_s3.storage.exists(orphan)
    assert rt_s3.storage.exists(running_part) and rt_s3.storage.exists(young)
    rt_s3.jobs.finish(running.id, "cancelled", "cancelled", "test over")


def test_emptied_tmp_folder_is_neither_listed_nor_swept(rt_s3):
    key = f"{job_temp_prefix(str(uuid.uuid4()))}{'f' * 16}/chunk-000000"
    with rt_s3.storage.open_write(key) as f:
        f.write(b"part")
    assert rt_s3.storage.delete(key)
    assert rt_s3.storage.list("tmp/") == []
    assert remove_orphans.fn(60) == 0
