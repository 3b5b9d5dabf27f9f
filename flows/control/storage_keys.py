"""Storage names: where the configured URL points, which keys are allowed, which are temporary."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flows.control.errors import ConfigError, StorageError
from flows.control.settings import Settings

SETTING = "EXPORTFLOW_STORAGE_URL"
# Interrupted local writes live here until renamed; S3 writes are multipart uploads instead.
TMP_DIR = ".tmp"
PARTS_DIR = "tmp"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The only names cleanup may delete: checkpoint.ChunkFiles.key and local_temp_name.
# A related sheet's chunks carry its name: `tags-chunk-000001`.
_CHUNK = re.compile(
    rf"{PARTS_DIR}/({_UUID})/[0-9a-f]{{16}}/(?:[a-z][a-z0-9_]{{0,30}}-)?chunk-[0-9]{{6,}}"
)
_LOCAL_TEMP = re.compile(rf"{re.escape(TMP_DIR)}/\.[^/]+\.[0-9a-f]{{32}}\.part")


def resolve_root(url: str, data_dir: Path) -> tuple[str, str]:
    """(scheme, root) of a storage URL: ("file", absolute folder) or ("s3", "bucket/prefix").

    `file:///abs/dir` and `file://localhost/abs/dir` name that folder (percent-escapes
    decoded); `file://exports`, `file:exports` and a bare relative path name a folder
    under `data_dir`; a bare absolute path is that folder. Anything else is a ConfigError.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return "s3", _s3_root(parts.netloc, parts.path)
    if scheme not in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        raise ConfigError(
            f"{SETTING} must start with file:// or s3:// (got the scheme {parts.scheme!r})"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{SETTING}: a folder URL takes no ?query or #fragment")
    if scheme == "":
        path = url.strip()  # a plain path, not a URL: nothing to decode
    elif parts.netloc in ("", "localhost"):
        path = unquote(parts.path)
    else:
        # file://exports/sub: a relative folder the older help text suggested, not a host.
        path = unquote(parts.netloc + parts.path)
    if not path:
        raise ConfigError(f"{SETTING} names no folder")
    if Path(path).is_absolute():
        root = Path(path).resolve()
    else:
        base = Path(data_dir).resolve()
        root = (base / path).resolve()
        if not root.is_relative_to(base):
            raise ConfigError(f"{SETTING}: a relative folder must stay under the data dir")
    if root == Path(root.anchor):
        raise ConfigError(f"{SETTING} must name a folder, not the filesystem root")
    return "file", str(root)


def _s3_root(bucket: str, path: str) -> str:
    prefix = path.strip("/")
    if not bucket:
        raise ConfigError(f"{SETTING}: an s3:// URL needs a bucket (s3://bucket/prefix)")
    problem = _key_problem(prefix) if prefix else None
    if problem:
        raise ConfigError(f"{SETTING}: the s3:// prefix is not allowed ({problem})")
    return f"{bucket}/{prefix}" if prefix else bucket


def storage_location(settings: Settings) -> str:
    """Where files go, as an operator reads it: an absolute folder or s3://bucket/prefix."""
    scheme, root = resolve_root(settings.resolved_storage_url, settings.data_dir)
    return f"s3://{root}" if scheme == "s3" else root


def check_key(key: str) -> str:
    """`key` if it is a relative path that stays under the root, else a (terminal) StorageError."""
    problem = _key_problem(key)
    if problem is not None:
        raise StorageError(f"the file name is not allowed in storage: {problem}", repr(key))
    return key


def check_prefix(prefix: str) -> str:
    """A folder prefix without its trailing slash ("" is the whole root), checked like a key."""
    if prefix in ("", "/"):
        return ""
    body = prefix[:-1] if prefix.endswith("/") else prefix
    check_key(body)
    return body


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key:
        return "it is empty"
    if "\x00" in key:
        return "it contains a NUL character"
    if "\\" in key:
        return "it contains a backslash"
    if key.startswith("/"):
        return "it is absolute"
    segments = key.split("/")
    if "" in segments:
        return "it has an empty path segment"
    if ".." in segments or "." in segments:
        return "it has a '.' or '..' segment"
    return None


def local_temp_name(final_name: str) -> str:
    """The name an unfinished local write has under TMP_DIR."""
    return f".{final_name}.{uuid.uuid4().hex}.part"


def chunk_job_id(key: str) -> str | None:
    """The job id of a chunk file key (tmp/<job>/<plan>/chunk-NNNNNN); None for any other key."""
    match = _CHUNK.fullmatch(key)
    return match.group(1) if match else None


def is_temporary(key: str) -> bool:
    """Whether `key` is one of the project's own temporary names (chunk or unfinished write)."""
    return chunk_job_id(key) is not None or _LOCAL_TEMP.fullmatch(key) is not None


def relative_key(root: str, path: str) -> str | None:
    """The key of backend `path` under `root`; None if it is not strictly under it."""
    # fsspec's local paths may or may not keep the leading slash; S3 paths never have one.
    base, path = root.strip("/") + "/", path.lstrip("/")
    return path[len(base) :] if path.startswith(base) and len(path) > len(base) else None
