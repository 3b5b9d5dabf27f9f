"""Storage failures as users see them: full, worth a retry, or refused; internals only in detail."""

from __future__ import annotations

import errno

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from flows.control.errors import ExportflowError, StorageError, StorageFull, StorageUnavailable

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
# No room: a retry soon will fail the same way, and operators must act (free space, quota).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FULL_CODES = frozenset({"EntityTooLarge", "QuotaExceeded", "XMinioStorageFull"})
_FULL_TEXT = ("no space left", "not enough space")


def _chain(exc: BaseException):
    """`exc` and its causes, each once."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _s3_error(e: BaseException) -> tuple[int, str]:
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return 0, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status, response.get("Error", {}).get("Code", "")


def is_full(exc: BaseException) -> bool:
    """ENOSPC, a quota, an object too large, or a store that says it has no space."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if _s3_error(e)[1] in _FULL_CODES:
            return True
        # s3fs may re-raise a store's answer as text only: "An error occurred (Code) when ...".
        text = str(e)
        if any(s in text.lower() for s in _FULL_TEXT) or any(f"({c})" in text for c in _FULL_CODES):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """5xx, throttling, timeouts, refused or dropped connections, anywhere in the cause chain."""
    for e in _chain(exc):
        if isinstance(e, (TimeoutError, ConnectionError, BotoConnectionError, HTTPClientError)):
            return True
        status, code = _s3_error(e)
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return True
    text = str(exc)
    return any(s in text for s in _TRANSIENT_TEXT)


def storage_error(exc: BaseException, doing: str) -> ExportflowError:
    """The error to raise for `exc`, which happened while `doing` ("writing the file").

    The message is a plain sentence; the store's own text, which may name the bucket,
    endpoint or path, goes to `detail` for the logs.
    """
    if isinstance(exc, ExportflowError):
        return exc
    text = str(exc).strip()
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if is_full(exc):
        return StorageFull(f"storage is full: there was no room left while {doing}", detail)
    if is_transient(exc):
        return StorageUnavailable(f"storage could not be reached while {doing}", detail)
    return StorageError(f"storage refused the request while {doing}", detail)


class _Classified:
    """A stored file whose failures surface as storage errors (full, transient...)."""

    def __init__(self, f) -> None:
        self._f = f

    def _call(self, doing: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            raise storage_error(exc, doing) from exc

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._f.close()

    def __getattr__(self, name: str):
        return getattr(self._f, name)


class WritingFile(_Classified):
    """The file being written."""

    def write(self, data) -> int:
        """Write `data` (S3: a full block is uploaded as one part)."""
        return self._call("writing the file", self._f.write, data)

    def flush(self) -> None:
        """Flush the buffer (S3: upload it if it holds a full block)."""
        self._call("writing the file", self._f.flush)


class ReadingFile(_Classified):
    """A stored file being read (S3: each read may be a ranged GET)."""

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, all that is left by default."""
        return self._call("reading the file", self._f.read, size)
