"""The HTTP API as the command line calls it: a bearer token, the one error shape, downloads."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import httpx

from flows.control.errors import ApiError, ApiUnavailable, ChecksumMismatch
from flows.control.local_files import WriteBehind

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
TOKEN_HINT = (
    "mint one with `exportflow token --user NAME --perm MODULE:read` and pass it"
    " as --token or EXPORTFLOW_TOKEN"
)
BLOCK = 1 << 20


class ApiClient:
    """One API base URL and token; every failure is an ApiError or ApiUnavailable."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: int = 200, **kwargs) -> httpx.Response:
        """`method path`; any answer but `expect` raises the server's error."""
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.base, exc) from None
        if resp.status_code != expect:
            raise self.error(resp)
        return resp

    def error(self, resp: httpx.Response) -> ApiError:
        """The server's `{"error": {code, message}}`, with what to do about a 401."""
        try:
            body = resp.json()["error"]
            code, message = str(body["code"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            # Not the exportflow API (a proxy, another service on the port, S3's XML).
            code, message = "http_error", f"HTTP {resp.status_code} from {resp.url}"
        if resp.status_code == 401:
            if self.token:
                message = f"the API refused the token ({message}); {TOKEN_HINT}"
            else:
                message = f"no token given; {TOKEN_HINT}"
        return ApiError(code, message, resp.status_code)

    def submit(self, module: str, body: dict, key: str | None = None) -> dict:
        """POST /api/{module}/export: the 202 body of a background job."""
        headers = {"Idempotency-Key": key} if key else {}
        path = f"/api/{quote(module, safe='')}/export"
        return self.call("POST", path, 202, json=body, headers=headers).json()

    def status(self, job_id: str) -> dict:
        """GET /api/exports/{id}."""
        return self.call("GET", f"/api/exports/{quote(job_id, safe='')}").json()

    def page(self, status: list[str], module: str | None, limit: int, cursor: str | None):
        """One page of GET /api/exports, newest first."""
        params: dict[str, Any] = {"status": status, "limit": limit}
        if module:
            params["module"] = module
        if cursor:
            params["cursor"] = cursor
        return self.call("GET", "/api/exports", params=params).json()

    def link(self, job_id: str) -> str:
        """A fresh link to the export's file (the Location of the download redirect)."""
        resp = self.call("GET", f"/api/exports/{quote(job_id, safe='')}/download", 302)
        return str(resp.next_request.url if resp.next_request else resp.headers["location"])

    @contextmanager
    def open_file(self, url: str, start: int = 0) -> Iterator[httpx.Response]:
        """The file behind `url` from byte `start` (206, or 200 when the server sends it all)."""
        # A link carries its own authority (a signature, a presigned URL): the bearer token
        # stays with the API and never goes to a storage host.
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=TIMEOUT) as resp:
                if resp.status_code not in (200, 206):
                    resp.read()
                    raise self.error(resp)
                yield resp
        except httpx.TransportError as exc:
            raise unreachable(url.split("?", 1)[0], exc) from None


def unreachable(where: str, exc: httpx.TransportError) -> ApiUnavailable:
    """The API (or a link's host) did not answer, in words that say what to check."""
    reason = str(exc) or type(exc).__name__
    return ApiUnavailable(
        f"cannot reach {where} ({reason}); is the API running (`exportflow up`)?"
        " Point --api or EXPORTFLOW_API_URL at it"
    )


def attachment_name(resp: httpx.Response) -> str | None:
    """The file name a Content-Disposition suggests, without any folder part."""
    header = resp.headers.get("content-disposition", "")
    found = re.search(r"filename\*=UTF-8''([^;]+)", header, re.I)
    name = unquote(found[1]) if found else None
    if name is None:
        plain = re.search(r'filename="([^"]*)"', header)
        name = plain[1] if plain else None
    name = Path(name).name if name else None
    return name if name not in (None, "", ".", "..") else None


def part_path(folder: Path, job_id: str) -> Path:
    """Where an unfinished download of `job_id` waits to be resumed."""
    return folder / f".exportflow-{job_id}.part"


def fetch_to_part(client: ApiClient, url: str, part: Path, size: int | None):
    """Fill `part` with the file behind `url`, resuming from what it holds; returns the
    response's suggested name and the sha256 of the whole file."""
    have = part.stat().st_size if part.is_file() else 0
    # Longer than the file is no prefix of it; a complete part still asks for its last
    # byte, whose answer carries the file's name.
    have = min(have, size - 1) if size else 0
    digest = hashlib.sha256()
    with client.open_file(url, have) as resp:
        resumed = resp.status_code == 206 and resp.headers.get("content-range", "").startswith(
            f"bytes {have}-"
        )
        with part.open("r+b" if resumed else "wb") as f:
            if resumed:
                left = have
                while left and (block := f.read(min(BLOCK, left))):
                    digest.update(block)
                    left -= len(block)
                f.truncate()
            copy_body(resp, WriteBehind(f), digest, url)
            f.flush()
            os.fsync(f.fileno())
        return attachment_name(resp), digest.hexdigest()


def copy_body(resp: httpx.Response, sink: BinaryIO, digest, url: str) -> None:
    """The response body into `sink`, hashed on the way; a broken transfer is ApiUnavailable."""
    try:
        for block in resp.iter_bytes(BLOCK):
            sink.write(block)
            digest.update(block)
    except httpx.TransportError as exc:
        raise unreachable(url.split("?", 1)[0], exc) from None


def stream_into(client: ApiClient, url: str, sink: BinaryIO) -> str:
    """The whole file into `sink` (standard output, a device, a pipe); its sha256."""
    digest = hashlib.sha256()
    with client.open_file(url) as resp:
        copy_body(resp, sink, digest, url)
    sink.flush()
    return digest.hexdigest()


def check_sha256(job_id: str, got: str, expected: str | None) -> None:
    """ChecksumMismatch when the bytes are not the export's."""
    if expected and got != expected:
        raise ChecksumMismatch(
            f"the file of export {job_id} arrived with sha256 {got}, not the recorded"
            f" {expected}; download it again"
        )
