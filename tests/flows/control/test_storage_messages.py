"""What users read when storage fails: a plain sentence naming the operation, no internals.

The store's own text (bucket, endpoint, host, path) is kept in `detail` for operators.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.control.errors import ExportflowError, StorageError, StorageUnavailable
from flows.control.settings import Settings
from flows.control.storage import Storage

OPERATIONS = {
    "saving the file": lambda s: write(s, "exports/x.csv"),
    "looking up the file": lambda s: s.exists("exports/x.csv"),
    "deleting the file": lambda s: s.delete("exports/x.csv"),
    "listing files": lambda s: s.list("exports/"),
    "opening the file for reading": lambda s: s.open_read("exports/x.csv"),
}


def write(store: Storage, key: str) -> None:
    with store.open_write(key) as f:
        f.write(b"id\n1\n")


def error_of(call, kind: type[ExportflowError] = StorageError) -> ExportflowError:
    with pytest.raises(kind) as err:
        call()
    return err.value


def assert_plain(error: ExportflowError, *internals: str) -> None:
    """The message is one sentence with none of `internals`; `detail` keeps the store's text."""
    assert error.to_dict() == {"code": error.code, "message": error.message}
    assert "\n" not in error.message and str(error) == error.message
    for text in internals:
        assert text not in error.message, (text, error.message)
    assert error.detail


@pytest.mark.parametrize("doing", OPERATIONS)
def test_unreachable_store_says_so_without_its_address(
    down: Storage, closed_port: int, s3_settings: Settings, doing: str
):
    error = error_of(lambda: OPERATIONS[doing](down), StorageUnavailable)
    assert error.message == f"storage could not be reached while {doing}"
    bucket, prefix = down.root.split("/", 1)
    assert_plain(error, "127.0.0.1", str(closed_port), "http", bucket, prefix, "exports/x.csv")
    assert str(closed_port) in error.detail


def test_refused_credentials_name_no_bucket_or_endpoint(s3_settings: Settings, s3_server):
    settings = s3_settings.model_copy(update={"s3_secret_key": SecretStr("not-the-secret")})
    store = Storage.from_settings(settings)
    error = error_of(lambda: write(store, "exports/x.csv"))
    assert not error.transient
    assert error.message == "storage refused the request while saving the file"
    bucket, prefix = store.root.split("/", 1)
    assert_plain(error, bucket, prefix, s3_server.endpoint_url, "127.0.0.1", "not-the-secret")


def test_local_refusal_names_no_path(tmp_path: Path):
    store = Storage.from_settings(
        Settings(_env_file=None, data_dir=tmp_path, storage_url="private-folder")
    )
    write(store, "exports/taken")
    error = error_of(lambda: write(store, "exports/taken/x.csv"))
    assert error.message == "storage refused the request while opening the file for writing"
    assert_plain(error, str(tmp_path), "private-folder", "exports/taken")
    assert "private-folder" in error.detail


def test_refused_key_is_not_echoed(tmp_path: Path):
    store = Storage.from_settings(Settings(_env_file=None, data_dir=tmp_path))
    error = error_of(lambda: store.open_read("../../etc/shadow-of-someone"))
    assert error.message == "the file name is not allowed in storage: it has a '.' or '..' segment"
    assert_plain(error, "shadow-of-someone", str(tmp_path))
    assert "shadow-of-someone" in error.detail
