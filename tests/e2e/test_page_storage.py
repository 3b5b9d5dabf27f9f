"""The export page with S3 storage: a finished export downloads from the bucket's own
signed link, which the browser opens itself (no CORS on the bucket needed)."""

from __future__ import annotations

import os
from datetime import UTC

import pytest
from playwright.sync_api import expect

from flows.control.tokens import mint_token

# The API tests' fixtures (the app factory, production-like settings) and job makers.
from tests.api.conftest import (  # noqa: F401
    LoopbackServer,
    api_settings,
    completed_job,
    create_app,
    make_runtime,
    user_id,
)
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.browser

DATA = b"id,name\r\n" + b"".join(f"{i},tag {i}\r\n".encode() for i in range(5000)) + os.urandom(8)


def test_a_file_in_s3_downloads_from_my_exports(
    create_app,  # noqa: F811 (the fixtures imported above)
    api_settings,  # noqa: F811
    s3_settings,
    registry,
    browser,
    tmp_path,
):
    port = free_port()
    s3 = {k: getattr(s3_settings, k) for k in ("storage_url", "s3_endpoint_url", "s3_access_key")}
    settings = api_settings.model_copy(
        update={
            **s3,
            "s3_secret_key": s3_settings.s3_secret_key,
            "public_api_url": f"http://127.0.0.1:{port}",
        }
    )
    rt = make_runtime(settings, registry)
    user = user_id()
    job = completed_job(rt, user, DATA)
    token = mint_token(settings, user, ["tags:read"], 600)
    with LoopbackServer(create_app(settings, rt=rt), port) as s:
        context = browser.new_context(base_url=s.url, accept_downloads=True, locale="en-US")
        page = context.new_page()
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url))
        page.goto("/")
        page.get_by_label("Access token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        row = page.locator("#history-rows tr").first
        expect(row).to_contain_text("ready to download")
        with page.expect_download() as info:
            row.get_by_role("button", name="Download").click()
        download = info.value
        path = tmp_path / "saved"
        download.save_as(path)
        context.close()
    assert path.read_bytes() == DATA
    stamp = f"{job.finished_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    assert download.suggested_filename == f"tags-export-{stamp}.csv"
    # Straight from the bucket, never through the API.
    assert any(u.startswith(settings.s3_endpoint_url) for u in fetched), fetched
