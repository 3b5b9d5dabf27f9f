"""Where files go: a local folder or any S3 store, through fsspec; writes commit only when complete."""

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

from flows.errors import StorageError, StorageUnavailable
from flows.settings import Settings

TMP_DIR = ".tmp"


def _storage_error(exc: BaseException, what: str) -> Exception:
    """5xx, timeouts and refused connections are worth a retry; the rest is not."""
    text = str(exc)
    transient = isinstance(exc, (TimeoutError, ConnectionError)) or any(
        s in text for s in ("500", "502", "503", "504", "SlowDown", "timed out", "Connect")
    )
    cls = StorageUnavailable if transient else StorageError
    return cls(f"storage {what} failed: {text.splitlines()[0] if text else type(exc).__name__}")


def sign_local(key: str, expires: int, secret: str) -> str:
    """HMAC-SHA256 over key and expiry, hex."""
    msg = f"{key}\n{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify_local(key: str, expires: int, signature: str, secret: str, now: float | None = None) -> bool:
    """Whether a local download link is authentic and not yet expired."""
    if (now or time.time()) > expires:
        return False
    return hmac.compare_digest(sign_local(key, expires, secret), signature)


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
                config_kwargs={"signature_version": "s3v4"},
                skip_instance_cache=True,
            )
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
            f = self.fs.open(self.path(key), "wb", block_size=16 * 2**20)
        except Exception as exc:
            raise _storage_error(exc, "open") from exc
        try:
            yield f
        except BaseException:
            f.discard()
            raise
        try:
            f.close()
        except Exception as exc:
            raise _storage_error(exc, "commit") from exc

    def exists(self, key: str) -> bool:
        """Whether a committed file is under `key`."""
        return self._call("stat", lambda: self.fs.exists(self.path(key)))

    def size(self, key: str) -> int:
        """Size in bytes of the file under `key`."""
        return self._call("stat", lambda: self.fs.size(self.path(key)))

    def delete(self, key: str) -> bool:
        """Delete `key`; False if it was already gone."""
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _storage_error(exc, "delete") from exc
        return True

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
