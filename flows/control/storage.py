"""Where files go: a local folder or any S3 store (fsspec); writes commit only when complete."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from flows.control.errors import StorageError
from flows.control.local_files import WriteBehind
from flows.control.settings import Settings
from flows.control.storage_errors import FULL_ERRNOS, ReadingFile, WritingFile, storage_error
from flows.control.storage_keys import (
    PARTS_DIR,
    TMP_DIR,
    check_key,
    check_prefix,
    is_temporary,
    local_temp_name,
    relative_key,
    resolve_root,
)

# The purpose Settings.secret derives the link key for: a token's key never signs a link.
DOWNLOAD_PURPOSE = "download"

# S3 client limits: an unreachable store fails within seconds, not minutes. The flow's
# task retries handle longer outages (those errors are transient).
S3_CONFIG = {
    "signature_version": "s3v4",
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}
S3_BLOCK_SIZE = 16 * 2**20


def sign_local(key: str, expires: int, secret: bytes) -> str:
    """HMAC-SHA256 over key and expiry with a per-purpose key (Settings.secret), hex."""
    msg = f"{key}\n{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def verify_local(
    key: str, expires: int, signature: str, secret: bytes, now: float | None = None
) -> bool:
    """Whether a local download link is authentic and not yet expired."""
    if (time.time() if now is None else now) > expires:
        return False
    expected = sign_local(key, expires, secret).encode()
    # bytes: compare_digest refuses non-ASCII str, and a signature comes from a URL.
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def attachment(filename: str) -> str:
    """A Content-Disposition that saves the download as `filename` (RFC 6266: an ASCII
    fallback and the UTF-8 name)."""
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class Storage:
    """Files by key under one root: a local folder, or an S3 bucket and prefix.

    The URL (EXPORTFLOW_STORAGE_URL) is read by `storage_keys.resolve_root`:
    `file:///abs/dir` and `file://localhost/abs/dir` are that folder, with percent-escapes
    decoded (`file:///tmp/my%20exports` is "/tmp/my exports"); `file://exports`,
    `file:exports` and a bare relative path are a folder under the data dir (never under
    the filesystem root); `s3://bucket/prefix` is an S3 store; any other scheme is a
    ConfigError. Keys are relative paths that cannot leave the root (no `..`, `.`, empty
    segments, backslashes, NUL or leading `/`): anything else is a terminal StorageError.
    """

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.scheme, self.root = resolve_root(url, settings.data_dir)
        # Here, not at the top: `exportflow export` needs only atomic_local_file, and
        # fsspec's import is 40 ms of every run.
        import fsspec

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
        else:
            self.fs = fsspec.filesystem("file")
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise storage_error(exc, "creating the storage folder") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        """The storage the settings name."""
        return cls(settings.resolved_storage_url, settings)

    @property
    def location(self) -> str:
        """The resolved root as an operator reads it: a folder or s3://bucket/prefix."""
        return f"s3://{self.root}" if self.scheme == "s3" else self.root

    def path(self, key: str) -> str:
        """The backend path of `key`, which must stay under the root."""
        return f"{self.root}/{check_key(key)}"

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """A file that appears under `key` only if the block completes without error."""
        writer = self._s3_write if self.scheme == "s3" else self._local_write
        with writer(key) as f:
            yield f

    @contextlib.contextmanager
    def _local_write(self, key: str) -> Iterator[BinaryIO]:
        final = Path(self.path(key))
        tmp_dir = Path(self.root) / TMP_DIR
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp = tmp_dir / local_temp_name(final.name)
            f = open(tmp, "wb")  # noqa: SIM115 - closed below on every path
        except OSError as exc:
            raise storage_error(exc, "opening the file for writing") from exc
        try:
            try:
                yield WritingFile(WriteBehind(f))
            except OSError as exc:
                # A writer that bypassed the wrapper (its fileno) ran out of room.
                if exc.errno in FULL_ERRNOS:
                    raise storage_error(exc, "writing the file") from exc
                raise
            try:
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, final)
            except OSError as exc:
                raise storage_error(exc, "saving the file") from exc
        finally:
            # After a failed write, closing flushes the buffer again: the first error matters.
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _s3_write(self, key: str) -> Iterator[BinaryIO]:
        # A multipart upload is invisible until completed: completing it is the commit.
        path = self.path(key)
        try:
            f = self.fs.open(path, "wb", block_size=S3_BLOCK_SIZE)
        except Exception as exc:
            raise storage_error(exc, "opening the file for writing") from exc
        try:
            yield WritingFile(f)
        except BaseException:
            _discard(f)
            raise
        try:
            f.close()
        except Exception as exc:
            _discard(f)
            raise storage_error(exc, "saving the file") from exc

    def exists(self, key: str) -> bool:
        """Whether a committed file is under `key`."""
        path = self.path(key)
        return self._call("looking up the file", lambda: self.fs.exists(path))

    def size(self, key: str) -> int:
        """Size in bytes of the file under `key`."""
        path = self.path(key)
        return self._call("looking up the file", lambda: self.fs.size(path))

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
            raise storage_error(exc, "deleting the file") from exc
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every file under the folder `prefix` (never `prefix` + "x"); how many."""
        if not check_prefix(prefix):
            raise StorageError("refusing to delete every file in storage", repr(prefix))
        keys = [key for key, _ in self.list(prefix)]
        return sum(self.delete(key) for key in keys)

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modified time as a UNIX timestamp) of every file under the folder `prefix`."""
        body = check_prefix(prefix)
        base = f"{self.root}/{body}" if body else self.root
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise storage_error(exc, "listing files") from exc
        # A prefix is a folder: tmp/<job> must not match tmp/<job>x/..., nor a file tmp/<job>.
        inside = f"{body}/" if body else ""
        out = []
        for path, info in found.items():
            key = relative_key(self.root, path)
            if key is None or not key.startswith(inside) or info.get("type") == "directory":
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            out.append((key, stamp))
        return sorted(out)

    def list_temporary(self) -> list[tuple[str, float]]:
        """(key, modified time) of the project's own temporary files: chunk files of jobs
        (tmp/<job uuid>/part-NNNNNN) and interrupted local writes (.tmp/.<name>.<hex>.part).
        Nothing else under the root, even under tmp/, is ever listed here."""
        found = self.list(PARTS_DIR) + self.list(TMP_DIR)
        return sorted((key, stamp) for key, stamp in found if is_temporary(key))

    def open_read(self, key: str) -> BinaryIO:
        """The file under `key`, for reading (seekable)."""
        path = self.path(key)
        f = self._call("opening the file for reading", lambda: self.fs.open(path, "rb"))
        return ReadingFile(f)

    def sign(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A download link valid for `expires_in` seconds (local links: ConfigError when the
        secret is the default outside development). `filename`: the name an S3 download is
        saved under (the local download route names the file itself)."""
        path = self.path(key)
        if self.scheme == "s3":
            extra = {}
            if filename:
                extra["ResponseContentDisposition"] = attachment(filename)
            sign = functools.partial(self.fs.sign, path, expiration=expires_in, **extra)
            return self._call("signing the download link", sign)
        expires = int(time.time()) + expires_in
        signature = sign_local(key, expires, self.settings.secret(DOWNLOAD_PURPOSE))
        query = urlencode({"expires": expires, "signature": signature})
        return f"{self.settings.public_api_url}/downloads/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        """Whether a local download link for `key` is authentic and not yet expired."""
        secret = self.settings.secret(DOWNLOAD_PURPOSE)
        return verify_local(key, expires, signature, secret, now)

    def _call(self, doing: str, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise storage_error(exc, doing) from exc


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
    tmp = tmp_dir / local_temp_name(final.name)
    try:
        with open(tmp, "wb") as f:
            yield WriteBehind(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
