"""The export page against the whole stack (`exportflow up`): a background export followed
to its file, and one cancelled."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

ROWS = 2000  # the session's products (tests/conftest.py seeds them)


@pytest.fixture
def page(stack, browser):
    """A tab signed in with a pasted token of a user of its own (the rate limit is per user)."""
    url = f"http://127.0.0.1:{stack.api_port}"
    user = f"page-{time.monotonic_ns()}"
    token = httpx.post(f"{url}/api/dev/token", json={"user": user}, timeout=10).json()["token"]
    context = browser.new_context(base_url=url, accept_downloads=True, locale="en-US")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto("/")
    tab.get_by_label("Access token").fill(token)
    tab.get_by_role("button", name="Sign in").click()
    expect(tab.get_by_role("heading", name="New export")).to_be_visible()
    yield tab
    context.close()
    assert not errors, f"the page threw: {errors}"


def start_background(page: Page) -> None:
    page.get_by_label("What to export").select_option("products")
    page.get_by_label("Always run in the background (download it later)").check()
    expect(page.locator("#preview")).to_contain_text(f"{ROWS:,} rows — runs in the background")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.get_by_role("progressbar", name="Export progress")).to_be_visible()


def test_a_background_export_shows_its_progress_and_downloads(page, tmp_path):
    start_background(page)
    bar = page.get_by_role("progressbar", name="Export progress")
    seen: list[str | None] = []
    deadline = time.monotonic() + 120
    while page.locator("#job-title").inner_text() != "Export ready":
        assert time.monotonic() < deadline, f"not finished; progress seen: {seen}"
        value = bar.get_attribute("aria-valuenow")
        if not seen or seen[-1] != value:
            seen.append(value)
        page.wait_for_timeout(50)
    seen.append(bar.get_attribute("aria-valuenow"))
    numbers = [int(v) for v in seen if v is not None]
    # It moved: a share below 100 % was shown before the end, and it never went back.
    assert numbers == sorted(numbers) and numbers[0] < 100 and numbers[-1] == 100, seen
    expect(page.locator("#job-figures")).to_contain_text(f"{ROWS:,} of {ROWS:,} rows")
    expect(page.locator("#job-expiry")).to_contain_text("is kept until")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download", exact=True).click()
    download = info.value
    assert download.suggested_filename.startswith("products-export-")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("ID,SKU,Name")
    # The list shows it finished, and a reload finds nothing left running.
    first = page.locator("#history-rows tr").first
    expect(first).to_contain_text("ready to download")
    expect(first).to_contain_text(f"{ROWS:,}")


def test_a_background_export_can_be_cancelled_and_is_found_again_after_reload(page):
    start_background(page)
    page.reload()
    expect(page.get_by_role("progressbar", name="Export progress")).to_be_visible()
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#job-title")).to_have_text("Export cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    # The list shows the row's own status, which the run's cancellation hook sets.
    expect(page.locator("#history-rows tr").first).to_contain_text("cancelled", timeout=60_000)
