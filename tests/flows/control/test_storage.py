"""Storage as a user sees it: real local folders and a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import gc
import hashlib
import io
import time
from pathlib import Path

import polars as pl
import psycopg
import pytest
from pydantic import SecretStr

from flows.control.errors import StorageError, StorageUnavailable
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.control.storage_helpers import (
    Boom,
    MiB,
    all_files,
    failed_write,
    fetch,
    objects,
    payload,
    pending_uploads,
    prefix_of,
    tmp_files,
)
from tests.flows.helpers import limits

# ------------------------------------------------------------------ local folder


def test_local_write_commits_on_success(local: Storage, tmp_path: Path):
    data = payload(MiB + 17)
    with local.open_write("exports/u1/report.csv") as f:
        f.write(data[:1000])
        f.write(data[1000:])

    final = tmp_path / "exports" / "exports" / "u1" / "report.csv"
    assert final.read_bytes() == data
    assert local.exists("exports/u1/report.csv")
    assert local.size("exports/u1/report.csv") == len(data)
    with local.open_read("exports/u1/report.csv") as r:
        assert r.read() == data
    assert tmp_files(local) == []
    assert all_files(local) == ["exports/u1/report.csv"]


def test_local_failure_leaves_no_file_and_no_temp_file(local: Storage):
    with pytest.raises(Boom), local.open_write("exports/failed.csv") as f:
        f.write(b"id,name\n1,half")
        raise Boom
    assert not local.exists("exports/failed.csv")
    assert tmp_files(local) == []
    assert all_files(local) == []


def test_local_reader_never_sees_a_partial_file(local: Storage):
    key = "exports/growing.csv"
    with local.open_write(key) as f:
        f.write(b"x" * MiB)
        f.flush()
        assert not local.exists(key)
        assert not Path(local.path(key)).exists()
        with pytest.raises(FileNotFoundError):
            local.size(key)
        assert len(tmp_files(local)) == 1  # the bytes so far live under .tmp only
    assert local.size(key) == MiB


def test_local_failed_rewrite_keeps_the_previous_file(local: Storage):
    key = "exports/again.csv"
    with local.open_write(key) as f:
        f.write(b"complete v1\n")
    with pytest.raises(Boom), local.open_write(key) as f:
        f.write(b"partial v2")
        assert Path(local.path(key)).read_bytes() == b"complete v1\n"
        raise Boom
    assert Path(local.path(key)).read_bytes() == b"complete v1\n"
    assert tmp_files(local) == []


def check_delete_exists_size(store: Storage) -> None:
    """The same answers from every backend: write, stat, delete twice, stat a missing key."""
    with store.open_write("a/b.csv") as f:
        f.write(b"12345")
    assert store.exists("a/b.csv")
    assert store.size("a/b.csv") == 5
    assert store.delete("a/b.csv") is True
    assert not store.exists("a/b.csv")
    assert store.delete("a/b.csv") is False
    with pytest.raises(FileNotFoundError):
        store.size("a/b.csv")


def test_local_delete_exists_size(local: Storage):
    check_delete_exists_size(local)


# ------------------------------------------------------------------ S3


def test_s3_write_commits_on_success(store: Storage, s3, s3_server):
    prefix = prefix_of(store)
    data = payload(3 * MiB + 5)
    with store.open_write("exports/u1/report.csv") as f:
        for i in range(0, len(data), 64 * 1024):
            f.write(data[i : i + 64 * 1024])

    assert objects(s3, s3_server.bucket, prefix) == {f"{prefix}exports/u1/report.csv": len(data)}
    body = s3.get_object(Bucket=s3_server.bucket, Key=f"{prefix}exports/u1/report.csv")["Body"]
    assert body.read() == data
    assert store.exists("exports/u1/report.csv")
    assert store.size("exports/u1/report.csv") == len(data)
    with store.open_read("exports/u1/report.csv") as r:
        r.seek(len(data) - 5)
        assert r.read() == data[-5:]
    assert pending_uploads(s3, s3_server.bucket, prefix) == []


@pytest.mark.parametrize("size", [100, 17 * MiB], ids=["small", "multipart"])
def test_s3_failure_leaves_no_object_and_no_pending_upload(
    store: Storage, s3, s3_server, unraisable, size: int
):
    prefix = prefix_of(store)

    def fail():
        if size > 16 * MiB:  # the first part is already on the server
            assert pending_uploads(s3, s3_server.bucket, prefix) == [f"{prefix}exports/failed.csv"]
        raise Boom

    assert failed_write(store, "exports/failed.csv", [payload(size)], fail)[0] is Boom
    gc.collect()
    assert unraisable == []  # the abandoned file does not try to finish itself later

    assert objects(s3, s3_server.bucket, prefix) == {}
    assert pending_uploads(s3, s3_server.bucket, prefix) == []
    assert not store.exists("exports/failed.csv")


def test_s3_reader_never_sees_a_partial_object(store: Storage, s3, s3_server):
    prefix = prefix_of(store)
    key = "exports/growing.csv"
    data = payload(17 * MiB + 3)
    with store.open_write(key) as f:
        f.write(data)
        f.flush()
        assert pending_uploads(s3, s3_server.bucket, prefix) == [prefix + key]
        assert objects(s3, s3_server.bucket, prefix) == {}
        assert not store.exists(key)
    assert objects(s3, s3_server.bucket, prefix) == {prefix + key: len(data)}


def test_s3_large_multipart_object_round_trips(store: Storage, s3, s3_server):
    prefix = prefix_of(store)
    data = payload(40 * MiB + 12345)  # three parts, the last one short
    with store.open_write("exports/big.csv") as f:
        for i in range(0, len(data), 3 * MiB):
            f.write(data[i : i + 3 * MiB])

    assert store.size("exports/big.csv") == len(data)
    got = s3.get_object(Bucket=s3_server.bucket, Key=f"{prefix}exports/big.csv")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert pending_uploads(s3, s3_server.bucket, prefix) == []


def test_s3_failed_rewrite_keeps_the_previous_object(store: Storage):
    key = "exports/again.csv"
    with store.open_write(key) as f:
        f.write(b"complete v1\n")
    with pytest.raises(Boom), store.open_write(key) as f:
        f.write(payload(17 * MiB))
        raise Boom
    assert store.open_read(key).read() == b"complete v1\n"


def test_s3_empty_file_is_committed(store: Storage):
    with store.open_write("exports/empty.csv") as f:
        f.write(b"")
    assert store.exists("exports/empty.csv")
    assert store.size("exports/empty.csv") == 0


def test_s3_delete_exists_size(store: Storage, s3, s3_server):
    check_delete_exists_size(store)
    assert objects(s3, s3_server.bucket, prefix_of(store)) == {}


# ------------------------------------------------------------------ end to end


def test_export_into_s3_and_download_through_the_presigned_url(
    s3_settings: Settings, registry, db_url: str
):
    plan = plan_export(ExportRequest(module="products", format="csv"), registry, limits(100))
    store = Storage(s3_settings.resolved_storage_url, s3_settings)
    with store.open_write("exports/x.csv") as f:
        result = export(db_url, plan, f, s3_settings)

    assert store.size("exports/x.csv") == result.bytes
    status, body = fetch(store.sign("exports/x.csv", 300))
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == result.sha256

    df = pl.read_csv(io.BytesIO(body), infer_schema=False)
    with psycopg.connect(db_url) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM products ORDER BY id")]
    assert df.height == result.rows == len(ids)
    assert df.columns[0] == "ID"
    assert df["ID"].to_list() == ids


# ------------------------------------------------------------------ storage down


def test_s3_down_commit_fails_fast_as_transient(down: Storage, s3, s3_server, unraisable):
    started = time.monotonic()
    error = failed_write(down, "exports/x.csv", [b"id\n1\n"])
    assert time.monotonic() - started < 15
    assert error == (StorageUnavailable, True, "storage_unavailable")
    gc.collect()
    assert unraisable == []
    assert objects(s3, s3_server.bucket, prefix_of(down)) == {}


def test_s3_down_mid_write_fails_fast_as_transient(down: Storage, s3, s3_server, unraisable):
    """The first full part cannot be uploaded: the writer gets a retryable error at once."""
    started = time.monotonic()
    error = failed_write(down, "exports/x.csv", [b"z" * MiB] * 17, lambda: pytest.fail("no"))
    assert time.monotonic() - started < 15
    assert error == (StorageUnavailable, True, "storage_unavailable")
    gc.collect()
    assert unraisable == []
    prefix = prefix_of(down)
    assert objects(s3, s3_server.bucket, prefix) == {}
    assert pending_uploads(s3, s3_server.bucket, prefix) == []


def test_s3_down_stat_and_delete_are_transient(down: Storage):
    with pytest.raises(StorageUnavailable):
        down.exists("exports/x.csv")
    with pytest.raises(StorageUnavailable):
        down.size("exports/x.csv")
    with pytest.raises(StorageUnavailable):
        down.delete("exports/x.csv")


def test_s3_wrong_secret_is_a_permanent_error(s3_settings: Settings):
    settings = s3_settings.model_copy(update={"s3_secret_key": SecretStr("not-the-secret")})
    store = Storage(settings.resolved_storage_url, settings)
    with pytest.raises(StorageError) as err, store.open_write("exports/x.csv") as f:
        f.write(b"id\n1\n")
    assert not err.value.transient
