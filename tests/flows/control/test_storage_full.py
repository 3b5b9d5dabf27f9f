"""A full store: StorageFull (storage_full), and nothing partial left behind.

The local cases run on a real 1 MiB tmpfs (mounting needs root; skipped with the reason
otherwise) and, everywhere, in a child process whose file size limit is 1 MiB
(RLIMIT_FSIZE with SIGXFSZ ignored: the kernel answers EFBIG, as a quota would).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from flows.control.errors import StorageError, StorageFull, StorageUnavailable
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.control.storage_errors import storage_error
from tests.flows.control.storage_helpers import MiB, failed_write, payload

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="exportflow-full-"))
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(where)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        where.rmdir()
        pytest.fail(
            f"cannot mount a 1 MiB tmpfs ({done.stderr.strip() or 'not root'}); these tests"
            " need root, and `make test` deselects them (-m 'not root') elsewhere"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def store_on(folder: Path) -> Storage:
    return Storage.from_settings(
        Settings(_env_file=None, data_dir=folder, storage_url=folder.as_uri())
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


@pytest.mark.root
def test_local_write_larger_than_the_disk_is_storage_full(small_fs: Path):
    store = store_on(small_fs)
    with store.open_write("exports/kept.csv") as f:
        f.write(b"complete v1\n")
    free = free_bytes(small_fs)

    error = failed_write(store, "exports/kept.csv", [payload(64 * 1024)] * 32)
    assert error == (StorageFull, False, "storage_full")
    assert files_under(small_fs) == ["exports/kept.csv"]  # no temp file, v1 intact
    assert (small_fs / "exports/kept.csv").read_bytes() == b"complete v1\n"
    assert free_bytes(small_fs) == free

    error = failed_write(store, "exports/new.csv", [payload(2 * MiB)])
    assert error == (StorageFull, False, "storage_full")
    assert files_under(small_fs) == ["exports/kept.csv"]


@pytest.mark.root
def test_local_commit_on_a_full_disk_is_storage_full(small_fs: Path):
    """A short write stays in the buffer; the disk refuses it when the file is committed."""
    store = store_on(small_fs)
    (small_fs / ".tmp").mkdir()
    (small_fs / "exports").mkdir()
    with open(small_fs / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
        while True:
            filler.write(b"\0" * 4096)
    with pytest.raises(StorageFull) as err, store.open_write("exports/x.csv") as f:
        f.write(b"id\n1\n")
    assert err.value.message == "storage is full: there was no room left while saving the file"
    assert str(small_fs) not in err.value.message
    assert "No space left on device" in err.value.detail
    assert files_under(small_fs) == ["filler"]


CHILD = """
import json, resource, signal, sys
from pathlib import Path
from flows.control.settings import Settings
from flows.control.storage import Storage

folder = Path(sys.argv[1])
store = Storage.from_settings(Settings(_env_file=None, data_dir=folder, storage_url=str(folder)))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
try:
    with store.open_write("exports/big.csv") as f:
        for _ in range(32):
            f.write(b"x" * 65536)
    out = {"error": None}
except Exception as exc:
    out = {"error": type(exc).__name__, "code": exc.code, "message": exc.message,
           "detail": exc.detail}
print(json.dumps(out))
"""


def test_local_write_past_the_file_size_limit_is_storage_full(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["error"], out["code"]) == ("StorageFull", "storage_full"), done.stderr
    assert out["message"] == "storage is full: there was no room left while writing the file"
    assert "File too large" in out["detail"]
    assert files_under(tmp_path) == []


def s3_answer(code: str, status: int, message: str = "") -> ClientError:
    """The exception botocore raises for an S3 error response."""
    body = {"Error": {"Code": code, "Message": message or code}}
    return ClientError({**body, "ResponseMetadata": {"HTTPStatusCode": status}}, "UploadPart")


@pytest.mark.parametrize(
    "exc, kind",
    [
        (s3_answer("EntityTooLarge", 400), StorageFull),
        (s3_answer("QuotaExceeded", 403), StorageFull),
        (s3_answer("XMinioStorageFull", 507), StorageFull),  # a 5xx, yet no retry will help
        (s3_answer("InternalError", 500, "No space left on device"), StorageFull),
        (OSError(5, "An error occurred (QuotaExceeded) when calling PutObject"), StorageFull),
        (OSError(28, "No space left on device"), StorageFull),
        (s3_answer("SlowDown", 503), StorageUnavailable),
        (s3_answer("AccessDenied", 403), StorageError),
        (s3_answer("NoSuchBucket", 404, "bucket exportflow-prod does not exist"), StorageError),
    ],
)
def test_store_answers_map_to_full_unavailable_or_refused(exc: Exception, kind: type):
    error = storage_error(exc, "writing the file")
    assert type(error) is kind
    assert "exportflow-prod" not in error.message
    assert error.detail and type(exc).__name__ in error.detail
