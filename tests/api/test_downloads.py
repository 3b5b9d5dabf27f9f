"""Downloads: the redirect to a fresh link, signed local links (Range, tamper, expiry), S3."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from flows.control.database import pg_connect
from flows.control.storage import DOWNLOAD_PURPOSE, sign_local
from tests.api.conftest import LoopbackServer, completed_job, make_runtime, new_job, user_id

DATA = os.urandom(300_000)
NAME = "tags-export-{:%Y%m%dT%H%M%SZ}.csv"


@pytest.fixture
def user(auth):
    uid = user_id()
    return uid, auth(uid)


def link_of(client, job, headers) -> str:
    resp = client.get(f"/api/exports/{job.id}/download", headers=headers, follow_redirects=False)
    assert resp.status_code == 302, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return resp.headers["location"]


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_local_download_serves_the_file_with_its_name_and_etag(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    before = int(time.time())
    url = link_of(client, job, headers)
    assert url.startswith("http://testserver/downloads/exports/")
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert before + 900 <= expires <= int(time.time()) + 900  # link_ttl_seconds

    resp = client.get(local_path(url))  # no bearer: the signature is the authority
    assert resp.status_code == 200
    assert resp.content == DATA
    assert resp.headers["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert resp.headers["accept-ranges"] == "bytes"
    name = NAME.format(job.finished_at.astimezone(UTC))
    assert resp.headers["content-disposition"] == f'attachment; filename="{name}"'


def test_link_lives_no_longer_than_the_file(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA, expires_in=120)
    expires = int(parse_qs(urlsplit(link_of(client, job, headers)).query)["expires"][0])
    assert expires <= int(time.time()) + 120


def test_head_and_ranges(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    path = local_path(link_of(client, job, headers))
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(DATA))

    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(DATA)}"

    multi = client.get(path, headers={"Range": "bytes=0-9,-10"})
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert DATA[:10] in multi.content and DATA[-10:] in multi.content

    etag = head.headers["etag"]
    same = client.get(path, headers={"Range": "bytes=5-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == DATA[5:10]
    changed = client.get(path, headers={"Range": "bytes=5-9", "If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == DATA


def tamper(url: str, how: str) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires, sig = query["expires"][0], query["signature"][0]
    if how == "signature":
        sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    elif how == "expires":
        expires = str(int(expires) + 3600)
    path = parts.path
    if how == "key":
        path = path.replace("/tags.csv", "/products.csv")
    return f"{path}?expires={expires}&signature={sig}"


@pytest.mark.parametrize("how", ["signature", "expires", "key"])
def test_tampered_link_is_403(client, rt, user, how):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    resp = client.get(tamper(link_of(client, job, headers), how))
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "invalid_link"


def test_expired_link_is_410_asking_for_a_new_one(client, rt, user):
    job = completed_job(rt, user[0], DATA)
    key = job.file_key
    expires = int(time.time()) - 5
    signature = sign_local(key, expires, rt.settings.secret(DOWNLOAD_PURPOSE))
    resp = client.get(f"/downloads/{key}?expires={expires}&signature={signature}")
    assert resp.status_code == 410
    assert "ask for a new link" in resp.json()["error"]["message"]


def test_expired_or_missing_file_is_410(client, rt, user):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    url = local_path(link_of(client, job, headers))
    rt.storage.delete(job.file_key)
    gone = client.get(url)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "file_expired"
    assert "ask for a new link" in gone.json()["error"]["message"]
    assert client.get(f"/api/exports/{job.id}/download", headers=headers).status_code == 410

    old = completed_job(rt, uid, DATA)
    url = local_path(link_of(client, old, headers))
    expire_now(rt, old.id)  # the file's life ran out after the link was made
    assert client.get(url).status_code == 410
    resp = client.get(f"/api/exports/{old.id}/download", headers=headers)
    assert resp.status_code == 410 and resp.json()["error"]["code"] == "file_expired"
    assert "ask for a new link" in resp.json()["error"]["message"]


def expire_now(rt, job_id) -> None:
    """Move a job's expiry into the past (what the cleanup flow then acts on)."""
    with pg_connect(rt.jobs.url) as conn:
        conn.execute(
            "UPDATE export_jobs SET expires_at = now() - interval '1 second' WHERE id = %s",
            (str(job_id),),
        )


def test_download_of_an_unfinished_job_is_409(client, rt, user):
    uid, headers = user
    job = new_job(rt, uid)
    resp = client.get(f"/api/exports/{job.id}/download", headers=headers)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_ready"
    other = client.get(f"/api/exports/{job.id}/download", headers={"Authorization": "Bearer x"})
    assert other.status_code == 401


def test_resume_with_curl_is_byte_exact(app, rt, user, tmp_path):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    with LoopbackServer(app) as server:
        resp = httpx.get(f"{server.url}/api/exports/{job.id}/download", headers=headers)
        assert resp.status_code == 302
        url = server.url + local_path(resp.headers["location"])
        out = tmp_path / "partial.csv"
        out.write_bytes(DATA[:123_457])  # an interrupted download
        if shutil.which("curl"):
            subprocess.run(["curl", "-sS", "-f", "-C", "-", "-o", str(out), url], check=True)
        else:
            rest = httpx.get(url, headers={"Range": f"bytes={out.stat().st_size}-"})
            assert rest.status_code == 206
            with open(out, "ab") as f:
                f.write(rest.content)
    assert out.read_bytes() == DATA


def test_the_link_as_json_names_the_file_and_when_the_link_expires(client, rt, user, auth):
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    before = datetime.now(UTC)
    resp = client.get(f"/api/exports/{job.id}/link", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    link = resp.json()
    assert link["filename"] == NAME.format(job.finished_at.astimezone(UTC))
    expires_at = datetime.fromisoformat(link["expiresAt"])
    assert (
        before + timedelta(seconds=899) <= expires_at <= datetime.now(UTC) + timedelta(seconds=900)
    )
    assert client.get(local_path(link["url"])).content == DATA
    # Another user's job is as unknown as a missing one; an unfinished one has no link.
    stranger = auth(user_id())
    assert client.get(f"/api/exports/{job.id}/link", headers=stranger).status_code == 404
    pending = new_job(rt, uid)
    assert client.get(f"/api/exports/{pending.id}/link", headers=headers).status_code == 409


# --- S3: a presigned URL that names the saved file ---


def test_s3_download_redirects_to_a_presigned_url_with_the_name(
    create_app, api_settings, s3_settings, registry, user
):
    s3 = {k: getattr(s3_settings, k) for k in ("storage_url", "s3_endpoint_url", "s3_access_key")}
    settings = api_settings.model_copy(
        update={**s3, "s3_secret_key": s3_settings.s3_secret_key, "link_ttl_seconds": 60}
    )
    rt = make_runtime(settings, registry)
    uid, headers = user
    job = completed_job(rt, uid, DATA)
    with TestClient(create_app(settings, rt=rt)) as c:
        url = link_of(c, job, headers)
        link = c.get(f"/api/exports/{job.id}/link", headers=headers).json()
    assert url.startswith(settings.s3_endpoint_url)
    # The JSON form, which the page opens itself.
    assert link["url"].startswith(settings.s3_endpoint_url)
    assert httpx.get(link["url"]).content == DATA
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["60"]
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == DATA
    name = NAME.format(job.finished_at.astimezone(UTC))
    assert f'filename="{name}"' in resp.headers["content-disposition"]
    assert resp.headers["content-disposition"].startswith("attachment;")
    # The signature covers the name: a link asking for another is refused.
    forged = url.replace("tags-export", "evil-export")
    assert httpx.get(forged).status_code == 403
