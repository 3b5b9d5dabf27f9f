"""Where files go: a local folder or any S3 store (fsspec); writes commit only when complete."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode, urlparse

import fsspec
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from flows.control.errors import StorageError, StorageUnavailable
from flows.control.settings import Settings

TMP_DIR = ".tmp"


# Error codes an S3 store answers when a later attempt may succeed.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)
_TRANSIENT_TEXT = (
    "SlowDown",
    "timed out",
    "Could not connect",
    "Connection refused",
    "Connection reset",
    "Service Unavailable",
)

# S3 client limits: an unreachable store fails within seconds, not minutes. The flow's
# task retries handle longer outages (the errors below are transient).
S3_CONFIG = {
    "signature_version": "s3v4",
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}
S3_BLOCK_SIZE = 16 * 2**20


def _is_transient(exc: BaseException) -> bool:
    """5xx, throttling, timeouts, refused or dropped connections, anywhere in the cause chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (TimeoutError, ConnectionError, BotoConnectionError, HTTPClientError)):
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = response.get("Error", {}).get("Code", "")
            if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
                return True
        e = e.__cause__ or e.__context__
    text = str(exc)
    return any(s in text for s in _TRANSIENT_TEXT)


def _storage_error(exc: BaseException, what: str) -> Exception:
    """5xx, timeouts and refused connections are worth a retry; the rest is not."""
    text = str(exc)
    cls = StorageUnavailable if _is_transient(exc) else StorageError
    return cls(f"storage {what} failed: {text.splitlines()[0] if text else type(exc).__name__}")


def sign_local(key: str, expires: int, secret: str) -> str:
    """HMAC-SHA256 over key and expiry, hex."""
    msg = f"{key}\n{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify_local(
    key: str, expires: int, signature: str, secret: str, now: float | None = None
) -> bool:
    """Whether a local download link is authentic and not yet expired."""
    if (time.time() if now is None else now) > expires:
        return False
    expected = sign_local(key, expires, secret).encode()
    # bytes: compare_digest refuses non-ASCII str, and a signature comes from a URL.
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class Storage:
    """Files by key under the configured root (file://dir or s3://bucket/prefix)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        self.scheme = parsed.scheme or "file"
        self.settings = settings
        if self.scheme == "s3":
            key = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
            self.fs = fsspec.filesystem(
                "s3",
                key=settings.s3_access_key,
                secret=key,
                endpoint_url=settings.s3_endpoint_url,
                client_kwargs={"region_name": settings.s3_region},
                config_kwargs=S3_CONFIG,
                # Other processes write and delete too: never answer from a stale listing.
                # With no listings to go stale, fsspec may share one client per configuration
                # (building one costs about a second; `sign` runs once per download request).
                use_listings_cache=False,
            )
            # botocore's retries (above) are the only ones: s3fs would repeat each of them.
            self.fs.retries = 1
            self.root = f"{parsed.netloc}{parsed.path}"
        else:
            self.fs = fsspec.filesystem("file")
            self.root = parsed.path if parsed.scheme else self.url
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        """The storage the settings name."""
        return cls(settings.resolved_storage_url, settings)

    def path(self, key: str) -> str:
        """The backend path of `key`."""
        return f"{self.root}/{key.lstrip('/')}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """A file that appears under `key` only if the block completes without error."""
        if self.scheme == "s3":
            with self._s3_write(key) as f:
                yield f
            return
        final = Path(self.path(key))
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_local_file(final, Path(self.root) / TMP_DIR) as f:
            yield f

    @contextlib.contextmanager
    def _s3_write(self, key: str) -> Iterator[BinaryIO]:
        # A multipart upload is invisible until completed: completing it is the commit.
        try:
            f = self.fs.open(self.path(key), "wb", block_size=S3_BLOCK_SIZE)
        except Exception as exc:
            raise _storage_error(exc, "open") from exc
        try:
            yield _S3Upload(f)
        except BaseException:
            _discard(f)
            raise
        try:
            f.close()
        except Exception as exc:
            _discard(f)
            raise _storage_error(exc, "commit") from exc

    def exists(self, key: str) -> bool:
        """Whether a committed file is under `key`."""
        return self._call("stat", lambda: self.fs.exists(self.path(key)))

    def size(self, key: str) -> int:
        """Size in bytes of the file under `key`."""
        return self._call("stat", lambda: self.fs.size(self.path(key)))

    def delete(self, key: str) -> bool:
        """Delete `key`; False if it was already gone."""
        path = self.path(key)
        try:
            # S3 answers a delete of a missing key with success: ask first.
            if not self.fs.exists(path):
                return False
            self.fs.rm_file(path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _storage_error(exc, "delete") from exc
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every file under `prefix`; returns how many."""
        keys = [key for key, _ in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modified time as a UNIX timestamp) of every file under `prefix`."""
        base = self.path(prefix).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise _storage_error(exc, "list") from exc
        out = []
        for path, info in found.items():
            modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            out.append((path[len(self.root) + 1 :].lstrip("/"), stamp))
        return sorted(out)

    def open_read(self, key: str) -> BinaryIO:
        """The file under `key`, for reading (seekable)."""
        return self._call("read", lambda: self.fs.open(self.path(key), "rb"))

    def sign(self, key: str, expires_in: int) -> str:
        """A download link valid for `expires_in` seconds."""
        if self.scheme == "s3":
            return self._call("sign", lambda: self.fs.sign(self.path(key), expiration=expires_in))
        expires = int(time.time()) + expires_in
        secret = self.settings.secret_key.get_secret_value()
        query = urlencode({"expires": expires, "signature": sign_local(key, expires, secret)})
        return f"{self.settings.public_api_url}/downloads/{quote(key)}?{query}"

    def _call(self, what: str, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise _storage_error(exc, what) from exc


class _S3Upload:
    """The S3 file being written; upload failures surface as storage errors."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data) -> int:
        """Buffer `data`; a full block is uploaded as one part."""
        try:
            return self._f.write(data)
        except Exception as exc:
            raise _storage_error(exc, "write") from exc

    def flush(self) -> None:
        """Upload the buffer if it holds a full block."""
        try:
            self._f.flush()
        except Exception as exc:
            raise _storage_error(exc, "write") from exc

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def _discard(f) -> None:
    """Abort the upload (best effort: the original error matters more) and close `f`.

    A discarded file must also be marked closed, or its finaliser would try to flush it.
    """
    try:
        with contextlib.suppress(Exception):
            f.discard()
    finally:
        f.closed = True


@contextlib.contextmanager
def atomic_local_file(final: Path, tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """Write to a temporary name in the same filesystem, rename over `final` on success."""
    tmp_dir = tmp_dir or final.parent
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f".{final.name}.{uuid.uuid4().hex}.part"
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
