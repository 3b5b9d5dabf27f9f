"""Storage as a user sees it: real local folders and a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import polars as pl
import psycopg
import pytest
from pydantic import SecretStr

from flows.control.errors import StorageError, StorageUnavailable
from flows.control.settings import Settings
from flows.control.storage import TMP_DIR, Storage, sign_local, verify_local
from flows.datapath.engine import export
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.helpers import limits

MiB = 2**20
SECRET = "local-link-secret"
API = "https://exports.example.test/api"


class Boom(Exception):
    """Raised inside a write block to simulate a failing export."""


_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str) -> tuple[int, bytes]:
    """GET with plain urllib, never through a proxy: (status, body), HTTP errors included."""
    try:
        with _direct.open(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def with_query(url: str, **changes: str) -> str:
    """`url` with some query parameters replaced."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def payload(size: int) -> bytes:
    """`size` random bytes: a part written twice or out of order would show."""
    return os.urandom(size)


def failed_write(store: Storage, key: str, chunks: list[bytes], then=None) -> tuple | None:
    """Write `chunks` under `key`, then call `then`; the error raised, as (type, transient, code).

    Only a summary comes back: no traceback keeps the abandoned file alive, so a finaliser
    that would still flush it runs at the caller's gc.collect(), where a test sees it.
    """
    try:
        with store.open_write(key) as f:
            for chunk in chunks:
                f.write(chunk)
            if then is not None:
                then()
    except BaseException as exc:
        return type(exc), getattr(exc, "transient", None), getattr(exc, "code", None)
    return None


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list:
    """Exceptions swallowed by finalisers (e.g. a half-written file flushing itself)."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


# ------------------------------------------------------------------ local folder


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        storage_url=(tmp_path / "exports").as_uri(),
        secret_key=SecretStr(SECRET),
        public_api_url=API,
    )


@pytest.fixture
def local(local_settings: Settings) -> Storage:
    return Storage.from_settings(local_settings)


def tmp_files(store: Storage) -> list[Path]:
    tmp = Path(store.root) / TMP_DIR
    return sorted(tmp.rglob("*")) if tmp.exists() else []


def all_files(store: Storage) -> list[str]:
    root = Path(store.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


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


# ------------------------------------------------------------------ local download links


def parse_local_link(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    prefix = urlsplit(API).path + "/downloads/"
    assert parts.path.startswith(prefix), url
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    return unquote(parts.path[len(prefix) :]), int(query["expires"][0]), query["signature"][0]


def test_local_sign_gives_an_api_link_that_verifies_until_expiry(local: Storage):
    key = "exports/user 7/report ü.csv"
    before = int(time.time())
    url = local.sign(key, 3600)

    assert url.startswith(f"{API}/downloads/")
    link_key, expires, signature = parse_local_link(url)
    assert link_key == key
    assert before + 3600 <= expires <= int(time.time()) + 3600
    assert verify_local(link_key, expires, signature, SECRET)
    assert verify_local(link_key, expires, signature, SECRET, now=expires)
    assert not verify_local(link_key, expires, signature, SECRET, now=expires + 1)


def test_local_link_expires_in_real_time(local: Storage):
    key, expires, signature = parse_local_link(local.sign("exports/soon.csv", 1))
    assert verify_local(key, expires, signature, SECRET)
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    assert not verify_local(key, expires, signature, SECRET)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda k, e, s: (k + "x", e, s), id="other-key"),
        pytest.param(lambda k, e, s: ("exports/other.csv", e, s), id="someone-elses-file"),
        pytest.param(lambda k, e, s: (k, e + 3600, s), id="extended-expiry"),
        pytest.param(lambda k, e, s: (k, e, s[:-1] + ("0" if s[-1] != "0" else "1")), id="sig"),
        pytest.param(lambda k, e, s: (k, e, s.upper()), id="sig-case"),
        pytest.param(lambda k, e, s: (k, e, s[:20]), id="sig-truncated"),
        pytest.param(lambda k, e, s: (k, e, ""), id="sig-empty"),
        pytest.param(lambda k, e, s: (k, e, "é" * 64), id="sig-non-ascii"),
    ],
)
def test_local_link_rejects_tampering(local: Storage, tamper):
    key, expires, signature = parse_local_link(local.sign("exports/mine.csv", 3600))
    assert verify_local(key, expires, signature, SECRET)
    assert not verify_local(*tamper(key, expires, signature), SECRET)


def test_local_link_quotes_the_key(local: Storage):
    key = "exports/a b/ç?&=#.csv"
    url = local.sign(key, 60)
    assert quote(key) in url
    assert parse_local_link(url)[0] == key


def test_local_link_rejects_another_secret(local: Storage):
    key, expires, signature = parse_local_link(local.sign("exports/mine.csv", 3600))
    assert not verify_local(key, expires, signature, "another-secret")
    assert signature == sign_local(key, expires, SECRET)


# ------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def s3(s3_server):
    return s3_server.client()


@pytest.fixture
def store(s3_settings: Settings) -> Storage:
    return Storage(s3_settings.resolved_storage_url, s3_settings)


def prefix_of(store: Storage) -> str:
    return store.root.split("/", 1)[1] + "/"


def objects(s3, bucket: str, prefix: str) -> dict[str, int]:
    out = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in out.get("Contents", [])}


def pending_uploads(s3, bucket: str, prefix: str) -> list[str]:
    out = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in out.get("Uploads", []) if u["Key"].startswith(prefix)]


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


# ------------------------------------------------------------------ S3 presigned links


def test_s3_sign_gives_a_sigv4_url_that_downloads_the_bytes(store: Storage, s3_server):
    key = "exports/user 7/report ü.csv"
    data = payload(2 * MiB + 1)
    with store.open_write(key) as f:
        f.write(data)

    url = store.sign(key, 600)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert url.startswith(s3_server.endpoint_url + "/")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["600"]
    assert query["X-Amz-Credential"][0].startswith(s3_server.access_key + "/")
    assert "X-Amz-Signature" in query
    assert s3_server.secret_key not in url

    assert fetch(url) == (200, data)


def test_s3_expired_url_is_refused(store: Storage):
    with store.open_write("exports/soon.csv") as f:
        f.write(b"id\n1\n")
    url = store.sign("exports/soon.csv", 2)
    assert fetch(url) == (200, b"id\n1\n")
    # Valid from X-Amz-Date (whole seconds) for X-Amz-Expires seconds.
    signed = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    expiry = datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp() + 2
    time.sleep(max(0.0, expiry - time.time()) + 1.1)
    status, body = fetch(url)
    assert status == 403, body
    assert b"id\n1\n" not in body


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: {"X-Amz-Signature": flip(q["X-Amz-Signature"])}, id="signature"),
        pytest.param(lambda q: {"X-Amz-Expires": "604800"}, id="extended-expiry"),
        pytest.param(lambda q: {"X-Amz-Credential": "other/" + q["X-Amz-Credential"]}, id="key"),
        pytest.param(lambda q: {"X-Amz-Signature": ""}, id="no-signature"),
    ],
)
def test_s3_tampered_url_is_refused(store: Storage, tamper):
    with store.open_write("exports/mine.csv") as f:
        f.write(b"secret rows\n")
    url = store.sign("exports/mine.csv", 600)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    status, body = fetch(with_query(url, **tamper(query)))
    assert status in (400, 403), body  # 400 only for a signature that is missing outright
    assert b"secret rows" not in body


def test_s3_url_for_one_key_does_not_open_another(store: Storage):
    for key, rows in (("exports/mine.csv", b"my rows"), ("exports/theirs.csv", b"their rows")):
        with store.open_write(key) as f:
            f.write(rows)
    url = store.sign("exports/mine.csv", 600)
    parts = urlsplit(url)
    other = urlunsplit(parts._replace(path=parts.path.replace("mine.csv", "theirs.csv")))
    status, body = fetch(other)
    assert status == 403, body
    assert b"their rows" not in body


def flip(sig: str) -> str:
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")


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


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound by us, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def down(s3_settings: Settings, closed_port: int) -> Storage:
    settings = s3_settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{closed_port}"})
    return Storage(settings.resolved_storage_url, settings)


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
