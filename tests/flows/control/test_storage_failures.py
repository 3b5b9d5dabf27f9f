"""Storage failures as users see them, from the exceptions the file system, botocore and
s3fs raise: full (terminal), worth a retry (transient) or refused, the store's own text
only in `detail`."""

from __future__ import annotations

import errno
import io

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from flows.control.errors import (
    InvalidRequest,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from flows.control.storage_errors import WritingFile, is_full, is_transient, storage_error

SECRET_BUCKET = "acme-private-exports"


def client_error(code: str, status: int, operation: str = "PutObject") -> ClientError:
    """The error boto3 raises for an S3 answer `status` with error `code`."""
    response = {
        "Error": {"Code": code, "Message": f"bucket {SECRET_BUCKET} says {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def caused_by(cause: BaseException, outer: BaseException | None = None) -> BaseException:
    """`outer` raised while handling `cause` (`raise outer from cause`)."""
    outer = outer or OSError("upload failed")
    try:
        try:
            raise cause
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def while_handling(cause: BaseException, outer: BaseException) -> BaseException:
    """`outer` raised in an `except` block for `cause`, without `from`."""
    try:
        try:
            raise cause
        except BaseException:
            raise outer  # noqa: B904
    except BaseException as exc:
        return exc


FULL = [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    OSError(errno.EFBIG, "File too large"),
    client_error("EntityTooLarge", 400),
    client_error("QuotaExceeded", 403),
    client_error("XMinioStorageFull", 507),
    OSError("An error occurred (XMinioStorageFull) when calling the PutObject operation"),
    OSError("An error occurred (EntityTooLarge) when calling the UploadPart operation"),
    OSError("No space left on the target volume"),
    RuntimeError("Not enough space to store the object"),
    caused_by(OSError(errno.ENOSPC, "No space left on device")),
    while_handling(client_error("QuotaExceeded", 403), RuntimeError("upload aborted")),
]
TRANSIENT = [
    TimeoutError("read timed out"),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    ConnectionResetError(errno.ECONNRESET, "reset"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:9/"),
    client_error("InternalError", 500),
    client_error("ServiceUnavailable", 503),
    client_error("SomethingNew", 502),
    client_error("SlowDown", 400),
    client_error("RequestTimeout", 400),
    client_error("Throttling", 400),
    client_error("ThrottlingException", 400),
    client_error("TooManyRequests", 400),
    client_error("Unnamed", 429),
    client_error("Unnamed", 500),
    OSError("An error occurred (SlowDown) when calling the PutObject operation"),
    OSError("Read timed out."),
    OSError("Could not connect to the endpoint URL"),
    OSError("[Errno 111] Connection refused"),
    OSError("Connection reset by peer"),
    OSError("503 Service Unavailable"),
    caused_by(ConnectionResetError(errno.ECONNRESET, "reset")),
    while_handling(client_error("SlowDown", 503), OSError("upload aborted")),
]
REFUSED = [
    client_error("AccessDenied", 403),
    client_error("NoSuchBucket", 404),
    client_error("InvalidRequest", 400),
    client_error("Unnamed", 499),
    PermissionError(errno.EACCES, "Permission denied"),
    OSError(errno.EROFS, "Read-only file system"),
    FileNotFoundError(errno.ENOENT, "No such file or directory"),
    ValueError("I/O operation on closed file"),
    OSError("An error occurred (AccessDenied) when calling the PutObject operation"),
    caused_by(PermissionError(errno.EACCES, "Permission denied")),
]


@pytest.mark.parametrize("exc", FULL, ids=repr)
def test_no_room_is_storage_full_and_not_retried(exc: BaseException):
    assert is_full(exc)
    err = storage_error(exc, "writing the file")
    assert type(err) is StorageFull and err.code == "storage_full" and not err.transient
    assert err.message == "storage is full: there was no room left while writing the file"
    assert err.detail.startswith(type(exc).__name__)


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_a_store_out_of_reach_is_worth_a_retry(exc: BaseException):
    assert is_transient(exc) and not is_full(exc)
    err = storage_error(exc, "listing files")
    assert type(err) is StorageUnavailable and err.transient
    assert err.code == "storage_unavailable"
    assert err.message == "storage could not be reached while listing files"
    assert err.detail.startswith(type(exc).__name__)


@pytest.mark.parametrize("exc", REFUSED, ids=repr)
def test_anything_else_is_refused_and_not_retried(exc: BaseException):
    assert not is_transient(exc) and not is_full(exc)
    err = storage_error(exc, "deleting a file")
    assert type(err) is StorageError and not err.transient and err.code == "storage_error"
    assert err.message == "storage refused the request while deleting a file"


def test_the_stores_own_text_goes_to_detail_only():
    err = storage_error(client_error("AccessDenied", 403), "writing the file")
    assert SECRET_BUCKET not in err.message
    assert err.detail.startswith("ClientError: An error occurred (AccessDenied)")
    assert SECRET_BUCKET in err.detail
    quiet = storage_error(OSError(), "writing the file")
    assert quiet.detail == "OSError"
    padded = storage_error(RuntimeError("  no such key \n"), "reading the file")
    assert padded.detail == "RuntimeError: no such key"


def test_an_exportflow_error_passes_through_unchanged():
    refused = StorageError("the file name is not allowed in storage: it is empty", "''")
    assert storage_error(refused, "writing the file") is refused
    invalid = InvalidRequest("bad")
    assert storage_error(invalid, "writing the file") is invalid


def test_a_cause_chain_that_loops_is_read_once():
    first, second = OSError("first"), OSError("second")
    first.__cause__, second.__cause__ = second, first
    assert not is_full(first) and not is_transient(first)
    assert type(storage_error(first, "writing the file")) is StorageError


def test_a_response_that_is_not_a_mapping_is_ignored():
    odd = OSError("odd")
    odd.response = ["not", "a", "dict"]
    assert not is_full(odd) and not is_transient(odd)
    partial = OSError("partial")
    partial.response = {"Error": {"Code": "SlowDown"}}
    assert is_transient(partial)
    no_error = OSError("no error")
    no_error.response = {"ResponseMetadata": {"HTTPStatusCode": 507}}
    assert is_transient(no_error) and not is_full(no_error)
    quota = OSError("upload refused")
    quota.response = {"Error": {"Code": "QuotaExceeded"}}
    assert is_full(quota)


class Failing(io.BytesIO):
    """A file whose writes and flushes fail as `exc`."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def write(self, data) -> int:
        raise self.exc

    def flush(self) -> None:
        if getattr(self, "exc", None) is not None:
            raise self.exc


def test_a_file_being_written_reports_storage_errors_keeping_the_cause():
    cause = OSError(errno.ENOSPC, "No space left on device")
    f = WritingFile(Failing(cause))
    with pytest.raises(StorageFull) as info:
        f.write(b"rows")
    assert info.value.__cause__ is cause
    assert info.value.message == "storage is full: there was no room left while writing the file"
    slow = client_error("SlowDown", 503)
    with pytest.raises(StorageUnavailable) as info:
        WritingFile(Failing(slow)).flush()
    assert info.value.__cause__ is slow
    assert info.value.message == "storage could not be reached while writing the file"


def test_a_file_being_written_passes_data_and_other_calls_through():
    buf = io.BytesIO()
    f = WritingFile(buf)
    assert f.write(b"abc") == 3
    f.flush()
    assert f.tell() == 3 and f.getvalue() == b"abc"
    assert f.writable() and not f.closed
