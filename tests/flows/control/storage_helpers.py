"""Storage test helpers: plain HTTP, payloads, failing writes, and what the S3 server holds."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from flows.control.storage import TMP_DIR, Storage

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


def tmp_files(store: Storage) -> list[Path]:
    tmp = Path(store.root) / TMP_DIR
    return sorted(tmp.rglob("*")) if tmp.exists() else []


def all_files(store: Storage) -> list[str]:
    root = Path(store.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def prefix_of(store: Storage) -> str:
    return store.root.split("/", 1)[1] + "/"


def objects(s3, bucket: str, prefix: str) -> dict[str, int]:
    out = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in out.get("Contents", [])}


def pending_uploads(s3, bucket: str, prefix: str) -> list[str]:
    out = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in out.get("Uploads", []) if u["Key"].startswith(prefix)]
