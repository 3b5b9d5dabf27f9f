"""Storage names without a store: which keys and prefixes are refused and why, which names
are the project's own temporary files, and where a backend path sits under the root."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from flows.control.errors import ConfigError, StorageError
from flows.control.settings import Settings
from flows.control.storage_keys import (
    check_key,
    check_prefix,
    chunk_job_id,
    is_temporary,
    local_temp_name,
    relative_key,
    resolve_root,
    storage_location,
)

JOB = str(uuid.UUID(int=0x3F1C1C437C1E4C579D3E2B8F3A6F0C11))
HEX32 = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "it is empty"),
        ("a\x00b", "it contains a NUL character"),
        ("a\\b", "it contains a backslash"),
        ("/etc/passwd", "it is absolute"),
        ("a//b", "it has an empty path segment"),
        ("a/", "it has an empty path segment"),
        ("a/../b", "it has a '.' or '..' segment"),
        ("..", "it has a '.' or '..' segment"),
        ("./a", "it has a '.' or '..' segment"),
        ("a/.", "it has a '.' or '..' segment"),
    ],
)
def test_a_refused_key_says_why_and_names_the_key(key: str, why: str):
    with pytest.raises(StorageError) as info:
        check_key(key)
    err = info.value
    assert err.message == f"the file name is not allowed in storage: {why}"
    assert err.detail == repr(key) and not err.transient


def test_a_key_that_is_not_text_is_refused_as_empty():
    with pytest.raises(StorageError, match="it is empty"):
        check_key(None)


@pytest.mark.parametrize("key", ["x", "exports/a b/ç?&=#.csv", "a..b/c..d", ".tmp/.x.part"])
def test_a_safe_key_is_returned_as_given(key: str):
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("prefix", "body"),
    [("", ""), ("/", ""), ("exports/", "exports"), ("exports", "exports"), ("a/b/", "a/b")],
)
def test_a_prefix_is_its_folder_without_the_trailing_slash(prefix: str, body: str):
    assert check_prefix(prefix) == body


@pytest.mark.parametrize("prefix", ["//", "a//", "../", "/etc/", "a/./"])
def test_a_prefix_that_leaves_the_root_is_refused(prefix: str):
    with pytest.raises(StorageError, match="not allowed in storage"):
        check_prefix(prefix)


def test_an_unfinished_write_has_a_fresh_temporary_name_cleanup_recognises():
    one, two = local_temp_name("report.csv"), local_temp_name("report.csv")
    assert one != two
    assert one.startswith(".report.csv.") and one.endswith(".part")
    assert len(one) == len(".report.csv.") + 32 + len(".part")
    assert is_temporary(f".tmp/{one}") and chunk_job_id(f".tmp/{one}") is None
    assert not is_temporary(one) and not is_temporary(f"exports/{one}")


@pytest.mark.parametrize(
    ("key", "job"),
    [
        (f"tmp/{JOB}/{HEX32[:16]}/chunk-000000", JOB),
        (f"tmp/{JOB}/{HEX32[:16]}/chunk-1234567", JOB),
        (f"tmp/{JOB}/{HEX32[:16]}/chunk-00000", None),
        (f"tmp/{JOB}/{HEX32[:16]}/chunk-000000.bak", None),
        (f"x/tmp/{JOB}/{HEX32[:16]}/chunk-000000", None),
        (f"tmp/{JOB}/{HEX32[:17]}/chunk-000000", None),
    ],
)
def test_only_chunk_file_names_carry_a_job_id(key: str, job: str | None):
    assert chunk_job_id(key) == job
    assert is_temporary(key) is (job is not None)


@pytest.mark.parametrize(
    ("root", "path", "key"),
    [
        ("/srv/files", "/srv/files/exports/a.csv", "exports/a.csv"),
        ("/srv/files", "srv/files/exports/a.csv", "exports/a.csv"),
        ("bucket/prefix", "bucket/prefix/tmp/x", "tmp/x"),
        ("bucket", "bucket/x", "x"),
        ("bucket/prefix", "bucket/prefix", None),
        ("bucket/prefix", "bucket/prefix/", None),
        ("bucket/prefix", "bucket/prefixed/x", None),
        ("bucket/prefix", "other/prefix/x", None),
    ],
)
def test_a_backend_path_has_a_key_only_strictly_under_the_root(root, path, key):
    assert relative_key(root, path) == key


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("s3://bucket", "bucket"),
        ("s3://bucket/", "bucket"),
        ("s3://bucket/a/b/", "bucket/a/b"),
        ("S3://bucket/a", "bucket/a"),
        ("  s3://bucket/a  ", "bucket/a"),
    ],
)
def test_an_s3_url_names_bucket_and_prefix(tmp_path: Path, url: str, root: str):
    assert resolve_root(url, tmp_path) == ("s3", root)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://bucket/a//b", "the s3:// prefix is not allowed (it has an empty path segment)"),
        ("s3://bucket/a/./b", "the s3:// prefix is not allowed (it has a '.' or '..' segment)"),
        ("s3://", "an s3:// URL needs a bucket (s3://bucket/prefix)"),
        ("c:/exports", "must start with file:// or s3:// (got the scheme 'c')"),
        ("ftp://host/x", "must start with file:// or s3:// (got the scheme 'ftp')"),
        ("file:///tmp/x#top", "a folder URL takes no ?query or #fragment"),
        ("file://", "names no folder"),
        ("", "names no folder"),
    ],
)
def test_a_bad_storage_url_says_what_is_wrong(tmp_path: Path, url: str, says: str):
    with pytest.raises(ConfigError) as info:
        resolve_root(url, tmp_path)
    assert info.value.message.startswith("EXPORTFLOW_STORAGE_URL")
    assert says in info.value.message


def test_a_file_url_with_surrounding_spaces_names_the_same_folder(tmp_path: Path):
    assert resolve_root(f"  {tmp_path}/x  ", tmp_path) == ("file", str(tmp_path / "x"))
    assert resolve_root(f" file://{tmp_path}/x ", tmp_path) == ("file", str(tmp_path / "x"))
    assert resolve_root("FILE:x", tmp_path) == ("file", str(tmp_path.resolve() / "x"))


def test_a_plain_path_is_taken_literally_and_a_url_is_decoded(tmp_path: Path):
    data = tmp_path.resolve()
    assert resolve_root("my%20exports", tmp_path) == ("file", str(data / "my%20exports"))
    assert resolve_root("file:my%20exports", tmp_path) == ("file", str(data / "my exports"))


def test_names_keep_every_character_of_bucket_prefix_and_root():
    assert resolve_root("s3://bucket/reports/X", Path("."))[1] == "bucket/reports/X"
    assert relative_key("bucket/X", "bucket/X/a.csv") == "a.csv"
    assert relative_key("/XY/files", "/XY/files/a.csv") == "a.csv"


def test_a_key_given_as_bytes_is_refused():
    with pytest.raises(StorageError, match="it is empty"):
        check_key(b"exports/a.csv")


def test_the_location_shown_to_operators_names_the_bucket_or_the_folder(tmp_path: Path):
    s3 = Settings(_env_file=None, data_dir=tmp_path, storage_url="s3://bucket/exports/")
    assert storage_location(s3) == "s3://bucket/exports"
    local = Settings(_env_file=None, data_dir=tmp_path, storage_url="files")
    assert storage_location(local) == str(tmp_path.resolve() / "files")
