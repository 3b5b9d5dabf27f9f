"""Where the storage URL points, and keys that can never leave the root (local folder and S3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from flows.control.errors import ConfigError, StorageError
from flows.control.settings import Settings
from flows.control.storage import Storage
from flows.control.storage_keys import resolve_root, storage_location
from tests.flows.control.storage_helpers import SECRET

# ------------------------------------------------------------------ the storage URL


@pytest.mark.parametrize(
    "url, expected",
    [
        ("file://{abs}/dir", "{abs}/dir"),
        ("file://localhost{abs}/dir", "{abs}/dir"),
        ("file://{abs}/my%20exports", "{abs}/my exports"),
        ("file://{abs}/caf%C3%A9/", "{abs}/café"),
        ("{abs}/plain", "{abs}/plain"),
        ("file://exports", "{data}/exports"),
        ("file://exports/sub", "{data}/exports/sub"),
        ("file:exports", "{data}/exports"),
        ("exports", "{data}/exports"),
        ("exports/sub/", "{data}/exports/sub"),
    ],
)
def test_file_urls_resolve(tmp_path: Path, url: str, expected: str):
    data = tmp_path / "data"
    names = {"abs": str(tmp_path), "data": str(data.resolve())}
    assert resolve_root(url.format(**names), data) == ("file", expected.format(**names))


@pytest.mark.parametrize(
    "url, says",
    [
        ("gs://bucket/prefix", "EXPORTFLOW_STORAGE_URL must start with file:// or s3://"),
        ("https://example.test/exports", "EXPORTFLOW_STORAGE_URL must start with file:// or s3://"),
        ("file:///", "not the filesystem root"),
        ("file://localhost/", "not the filesystem root"),
        ("/", "not the filesystem root"),
        ("file://../elsewhere", "must stay under the data dir"),
        ("../elsewhere", "must stay under the data dir"),
        ("file:///tmp/x?y=1", "no ?query"),
        ("s3:///prefix", "needs a bucket"),
        ("s3://bucket/a/../b", "prefix is not allowed"),
    ],
)
def test_bad_storage_urls_are_config_errors(tmp_path: Path, url: str, says: str):
    with pytest.raises(ConfigError) as err:
        resolve_root(url, tmp_path)
    assert "EXPORTFLOW_STORAGE_URL" in err.value.message
    assert says in err.value.message


def test_host_form_writes_under_the_data_dir_not_the_filesystem_root(tmp_path: Path):
    """file://exports (an older help text's form) once meant /exports and /tmp."""
    data = tmp_path / "data"
    root_exports_existed = Path("/exports").exists()
    settings = Settings(_env_file=None, data_dir=data, storage_url="file://exports")
    store = Storage.from_settings(settings)
    with store.open_write("tmp/3f1c1c43-7c1e-4c57-9d3e-2b8f3a6f0c11/part-000000") as f:
        f.write(b"part")

    folder = data.resolve() / "exports"
    assert store.root == storage_location(settings) == store.location == str(folder)
    assert (folder / "tmp/3f1c1c43-7c1e-4c57-9d3e-2b8f3a6f0c11/part-000000").read_bytes() == b"part"
    assert Path("/exports").exists() == root_exports_existed
    assert all(key.startswith("tmp/3f1c1c43-") for key, _ in store.list_temporary())


def test_default_folder_with_a_space_is_decoded(tmp_path: Path, monkeypatch):
    # The default store: no storage URL, whatever a session fixture put in the environment.
    monkeypatch.delenv("EXPORTFLOW_STORAGE_URL", raising=False)
    data = tmp_path / "my data"
    settings = Settings(_env_file=None, data_dir=data)
    assert "%20" in settings.resolved_storage_url
    store = Storage.from_settings(settings)
    with store.open_write("exports/a.csv") as f:
        f.write(b"x")
    assert store.location == str(data.resolve() / "files")
    assert (data / "files" / "exports" / "a.csv").read_bytes() == b"x"
    assert not (tmp_path / "my%20data").exists()


def test_s3_location_names_bucket_and_prefix(s3_settings: Settings):
    bucket_and_prefix = s3_settings.storage_url.removeprefix("s3://")
    assert storage_location(s3_settings) == f"s3://{bucket_and_prefix}"
    assert Storage.from_settings(s3_settings).root == bucket_and_prefix


# ------------------------------------------------------------------ keys stay under the root

BAD_KEYS = ["../x", "a/../../x", "..", ".", "./a", "a/./b", "/etc/passwd", "a\\b", "..\\x",
            "a\x00b", "a//b", "a/", "", "tmp//part-000000"]  # fmt: skip
BAD_PREFIXES = ["../", "..", "a/../..", "/etc", "a//b/", "a\\b", "a\x00", "./"]
GOOD_KEYS = ["exports/a b/ç?&=#.csv", "a..b/c..d.csv", ".tmp/.x.csv.part", "x"]

KEY_METHODS = {
    "path": lambda s, k: s.path(k),
    "open_write": lambda s, k: s.open_write(k).__enter__(),
    "open_read": lambda s, k: s.open_read(k),
    "delete": lambda s, k: s.delete(k),
    "exists": lambda s, k: s.exists(k),
    "size": lambda s, k: s.size(k),
    "sign": lambda s, k: s.sign(k, 60),
}
PREFIX_METHODS = {
    "list": lambda s, p: s.list(p),
    "delete_prefix": lambda s, p: s.delete_prefix(p),
}


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path: Path) -> Storage:
    """A storage of each kind, with a file beside its root that a bad key could reach."""
    if request.param == "s3":
        return Storage.from_settings(request.getfixturevalue("s3_settings"))
    (tmp_path / "secret.txt").write_text("outside")
    settings = Settings(
        _env_file=None, data_dir=tmp_path, storage_url="files", secret_key=SecretStr(SECRET)
    )
    return Storage.from_settings(settings)


def refused(call) -> StorageError:
    with pytest.raises(StorageError) as err:
        call()
    assert not err.value.transient and err.value.code == "storage_error"
    assert "not allowed" in err.value.message
    return err.value


@pytest.mark.parametrize("method", KEY_METHODS)
def test_every_keyed_method_refuses_keys_that_leave_the_root(backend: Storage, method: str):
    for key in BAD_KEYS:
        refused(lambda key=key: KEY_METHODS[method](backend, key))
    assert backend.list("") == []


@pytest.mark.parametrize("method", PREFIX_METHODS)
def test_every_prefix_method_refuses_prefixes_that_leave_the_root(backend: Storage, method):
    with backend.open_write("keep/me.csv") as f:
        f.write(b"kept")
    for prefix in BAD_PREFIXES:
        refused(lambda prefix=prefix: PREFIX_METHODS[method](backend, prefix))
    assert backend.exists("keep/me.csv")


def test_delete_prefix_refuses_the_whole_root(backend: Storage):
    with backend.open_write("keep/me.csv") as f:
        f.write(b"kept")
    for prefix in ("", "/"):
        with pytest.raises(StorageError):
            backend.delete_prefix(prefix)
    assert backend.list("") == [("keep/me.csv", pytest.approx(backend.list("keep")[0][1]))]


def test_unusual_but_safe_keys_still_work(backend: Storage):
    for key in GOOD_KEYS:
        with backend.open_write(key) as f:
            f.write(key.encode())
        assert backend.exists(key) and backend.size(key) == len(key.encode())
        assert backend.delete(key)
