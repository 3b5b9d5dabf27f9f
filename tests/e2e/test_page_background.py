"""The export page against the whole stack (`exportflow up`): a background export followed
to its file, and one cancelled."""

from __future__ import annotations

import csv
import hashlib
import re
import time

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot

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


MY_EXPORTS = """async () => {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem("exportflow.token")}` };
  return (await (await fetch("/api/exports?limit=100", { headers })).json()).items.length;
}"""


def start_background(page: Page, double_click: bool = False) -> None:
    page.get_by_label("What to export").select_option("products")
    page.get_by_label("Always run in the background (download it later)").check()
    expect(page.locator("#preview")).to_contain_text(f"{ROWS:,} rows — runs in the background")
    button = page.get_by_role("button", name="Export", exact=True)
    button.dblclick() if double_click else button.click()
    expect(page.get_by_role("progressbar", name="Export progress")).to_be_visible()


def test_a_background_export_shows_its_progress_and_downloads(page, stack, tmp_path):
    start_background(page)
    bar = page.get_by_role("progressbar", name="Export progress")
    seen: list[str | None] = []
    shot = False
    deadline = time.monotonic() + 120
    while page.locator("#job-title").inner_text() != "Export ready":
        assert time.monotonic() < deadline, f"not finished; progress seen: {seen}"
        value = bar.get_attribute("aria-valuenow")
        if not seen or seen[-1] != value:
            seen.append(value)
        if not shot and value is not None and 0 < int(value) < 100:
            page.wait_for_timeout(450)  # the bar's width eases in over 0.4 s
            screenshot(page, tmp_path, "export-progress.png")
            shot = True
        page.wait_for_timeout(50)
    seen.append(bar.get_attribute("aria-valuenow"))
    numbers = [int(v) for v in seen if v is not None]
    # It moved: a share below 100 % was shown before the end, and it never went back.
    assert numbers == sorted(numbers) and numbers[0] < 100 and numbers[-1] == 100, seen
    expect(page.locator("#job-figures")).to_contain_text(f"{ROWS:,} of {ROWS:,} rows")
    expect(page.locator("#job-expiry")).to_contain_text("is kept until")
    # Told to screen readers too, through the page's live region.
    expect(page.get_by_role("status")).to_have_text("Export status: ready to download.")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download", exact=True).click()
    download = info.value
    assert download.suggested_filename.startswith("products-export-")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    # The file holds the table: every product once, in key order, and it is the very
    # file the job recorded.
    job = stack.rt.jobs.get(page.evaluate("sessionStorage.getItem('exportflow.job')"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == job.sha256
    with open(path, newline="", encoding="utf-8") as f:
        header, *body = list(csv.reader(f))
    assert header[:3] == ["ID", "SKU", "Name"]
    with psycopg.connect(stack.rt.url) as conn:
        table = conn.execute("SELECT id::text, sku FROM products ORDER BY products.id").fetchall()
    assert [tuple(r[:2]) for r in body] == table
    # The list shows it finished, with its actions, and fits a desktop window unscrolled.
    first = page.locator("#history-rows tr").first
    expect(first).to_contain_text("ready to download")
    expect(first).to_contain_text(f"{ROWS:,}")
    expect(first.get_by_role("button", name=re.compile("^Delete the file"))).to_be_visible()
    wrap = page.locator("#history-table")
    widths = wrap.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], f"My exports scrolls sideways: {widths}"
    screenshot(page, tmp_path, "export-history.png")


def test_a_background_export_can_be_cancelled_and_is_found_again_after_reload(page, stack):
    start_background(page, double_click=True)
    assert page.evaluate(MY_EXPORTS) == 1  # a double click starts one export
    job_id = page.evaluate("sessionStorage.getItem('exportflow.job')")
    page.reload()
    expect(page.get_by_role("progressbar", name="Export progress")).to_be_visible()
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#job-title")).to_have_text("Export cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    # The panel follows the job until its own record ends, which brings the reason.
    expect(page.locator("#job-error")).to_contain_text("[cancelled]", timeout=60_000)
    # The list shows the row's own status, which the run's cancellation hook sets.
    expect(page.locator("#history-rows tr").first).to_contain_text("cancelled", timeout=60_000)
    job = stack.job_final(job_id)
    assert job.status == "cancelled" and job.file_key is None
    storage = stack.rt.storage
    assert storage.list(f"exports/{job_id}") == [] and storage.list(f"tmp/{job_id}") == []
