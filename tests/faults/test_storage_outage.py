"""The S3 server stopped for 30 s under a running export, then started again."""

from __future__ import annotations

import time

import pytest

from flows.control.errors import StorageUnavailable, is_transient
from tests.faults.conftest import ROWS, start_export
from tests.flows.helpers import RUN_TIMEOUT, stored

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 30


@pytest.mark.slow
def test_s3_down_for_30_s_mid_export_completes_with_nothing_left_behind(own_s3, own_rt_s3):
    rt = own_rt_s3
    job, expected, run = start_export(rt)
    own_s3.stop()
    statuses = set()
    until = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < until:
        statuses.add(rt.jobs.get(job.id).status)
        time.sleep(1)
    own_s3.start()
    state = run.result(RUN_TIMEOUT + OUTAGE_SECONDS)
    done = rt.jobs.get(job.id)
    # The user saw it processing throughout, never a failure that later turned back.
    assert statuses == {"processing"}, statuses
    assert state.is_completed(), (state.message, done.error_code, done.error)
    assert (done.status, done.processed_rows) == ("completed", ROWS)
    assert stored(rt, done.file_key) == expected
    # Only the file: no chunk parts, no unfinished multipart upload.
    client = own_s3.server.client()
    root = rt.storage.location.split("/", 3)[3]
    listed = client.list_objects_v2(Bucket=own_s3.server.bucket, Prefix=root)
    names = [o["Key"][len(root) + 1 :] for o in listed.get("Contents", [])]
    assert names == [done.file_key]
    uploads = client.list_multipart_uploads(Bucket=own_s3.server.bucket, Prefix=root)
    assert uploads.get("Uploads", []) == []


def test_a_stored_file_read_while_s3_is_down_is_a_transient_storage_error(own_s3, own_rt_s3):
    # The flow writes the file from its stored chunks: a failed read must be a fault it
    # pauses and resumes after, not an unknown error that fails the export at once.
    storage = own_rt_s3.storage
    with storage.open_write("tmp/probe/chunk-000000") as f:
        f.write(b"x" * 1000)
    with storage.open_read("tmp/probe/chunk-000000") as src:
        own_s3.stop()
        try:
            with pytest.raises(StorageUnavailable, match="while reading the file") as raised:
                src.read(100)
        finally:
            own_s3.start()
    assert is_transient(raised.value)
