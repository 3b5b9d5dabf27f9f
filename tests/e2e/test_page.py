"""The export page in a real Chromium against a real uvicorn server and the test database:
what a person sees, clicks and downloads."""

from __future__ import annotations

import csv
import io
import itertools
import re
import time
import zipfile
from pathlib import Path

import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from flows.control.tokens import mint_token

# The API tests' fixtures: the app factory, production-like settings, a runtime per test.
from tests.api.conftest import (  # noqa: F401
    LoopbackServer,
    api_settings,
    create_app,
    new_job,
    rt,
    user_id,
)
from tests.e2e.conftest import free_port, screenshot

pytestmark = pytest.mark.browser

TAG_COLUMNS = ["id", "name", "slug", "color", "usage_count"]


@pytest.fixture
def server(request, create_app, api_settings, rt):  # noqa: F811 (the fixtures imported above)
    """The app in development (the token button), serving the page on a loopback port;
    a test may change settings through `parametrize("server", [{...}], indirect=True)`."""
    port = free_port()
    settings = api_settings.model_copy(
        update={
            "env": "development",
            "public_api_url": f"http://127.0.0.1:{port}",
            "rate_limit_per_hour": 1000,
            **getattr(request, "param", {}),
        }
    )
    with LoopbackServer(create_app(settings, rt=rt), port) as s:
        yield s


@pytest.fixture
def page(browser, server):
    """A fresh tab; it fails the test if the page throws or fetches anything elsewhere."""
    context = browser.new_context(base_url=server.url, accept_downloads=True, locale="en-US")
    tab = context.new_page()
    elsewhere: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda r: r.url.startswith((server.url, "blob:")) or elsewhere.append(r.url))
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not elsewhere, f"the page fetched from the network: {elsewhere}"
    assert not errors, f"the page threw: {errors}"


def sign_in(page: Page) -> None:
    page.goto("/")
    page.get_by_role("button", name="Use development token").click()
    expect(page.get_by_role("heading", name="New export")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Signed in.")


def choose_tag_columns(page: Page) -> None:
    page.get_by_label("What to export").select_option("tags")
    page.get_by_role("button", name="Select none").click()
    for label in [
        "ID (id)",
        "Name (name)",
        "Slug (slug)",
        "Colour (color)",
        "Usage count (usage_count)",
    ]:
        page.get_by_label(label, exact=True).check()


def tag_rows(db_url: str) -> list[list[str]]:
    """The tags as the CSV should hold them: NULL is an empty cell."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {', '.join(TAG_COLUMNS)} FROM tags ORDER BY id").fetchall()
    return [["" if v is None else str(v) for v in row] for row in rows]


def test_the_token_stays_out_of_urls_and_sign_in_comes_back_after_a_401(page):
    sign_in(page)
    token = page.evaluate("sessionStorage.getItem('exportflow.token')")
    assert token and token not in page.url
    # A token the server no longer accepts: the next call sends the person to sign in.
    page.evaluate("sessionStorage.setItem('exportflow.token', 'not-a-token')")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#token-error")).to_contain_text("Please sign in again")
    assert page.evaluate("sessionStorage.getItem('exportflow.token')") is None


def downloaded_rows(page: Page, tmp_path: Path) -> tuple[str, list[str], list[list[str]]]:
    """Export, save the download: (its file name, the header, the rows)."""
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with open(path, newline="", encoding="utf-8") as f:
        header, *body = list(csv.reader(f))
    return download.suggested_filename, header, body


@pytest.mark.parametrize("server", [{"direct_max_rows": 10}], indirect=True)
def test_a_streamed_csv_download_holds_the_table(page, server, db_url, tmp_path):
    sign_in(page)
    choose_tag_columns(page)
    expected = tag_rows(db_url)
    expect(page.locator("#preview")).to_contain_text(
        f"{len(expected)} rows — streams as it downloads"
    )
    name, header, body = downloaded_rows(page, tmp_path)
    assert header == ["ID", "Name", "Slug", "Colour", "Usage count"]
    assert body == expected
    expect(page.get_by_role("status")).to_have_text(f"Downloaded {name}.")


def test_a_direct_csv_download_holds_the_table(page, server, db_url, tmp_path):
    sign_in(page)
    choose_tag_columns(page)
    expected = tag_rows(db_url)
    expect(page.locator("#preview")).to_contain_text(f"{len(expected)} rows — downloads now")
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    download = info.value
    assert re.fullmatch(r"tags-export-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with open(path, newline="", encoding="utf-8") as f:
        header, *body = list(csv.reader(f))
    assert header == ["ID", "Name", "Slug", "Colour", "Usage count"]
    assert len(body) == len(expected)
    for got, want in zip(body, expected, strict=True):
        assert got == want
    expect(page.get_by_role("status")).to_have_text(f"Downloaded {download.suggested_filename}.")
    # The export is in the list, finished.
    first = page.locator("#history-rows tr").first
    expect(first).to_contain_text("tags")
    expect(first).to_contain_text("downloaded")
    expect(first).to_contain_text(str(len(expected)))


def test_errors_show_next_to_their_field(page):
    sign_in(page)
    page.get_by_label("What to export").select_option("tags")
    page.get_by_role("button", name="Select none").click()
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#columns-field .error")).to_have_text("Choose at least one column.")
    page.get_by_role("button", name="Select all").click()
    expect(page.locator("#columns-field .error")).to_be_hidden()

    page.get_by_label("From", exact=True).fill("2024-02-01")
    page.get_by_label("To", exact=True).fill("2024-01-01")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#dates-field .error")).to_have_text("“From” must not be after “To”.")
    expect(page.get_by_label("From", exact=True)).to_be_focused()
    page.get_by_label("To", exact=True).fill("2024-03-01")

    page.get_by_label("Only the rows with these ids").check()
    page.get_by_label("Ids, one per line or separated by commas").fill("1\n2, 2")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#ids-field .error")).to_have_text("The id 2 is listed twice.")
    page.get_by_label("All rows").check()

    # The server's refusal (a value of the wrong type), next to the filters.
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_label("Column", exact=True).select_option("usage_count")
    page.get_by_label("Value", exact=True).fill("many")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#filters-field .error")).to_contain_text("[invalid_filter_value]")
    expect(page.get_by_role("status")).to_have_text("The export was not started.")

    # A refusal by field path lands at that field and names the path.
    page.get_by_label("Column", exact=True).select_option("name")
    page.get_by_label("Value", exact=True).fill("a\x00b")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#filters-field .error")).to_have_text(
        "contains U+0000 (a NUL character); remove it (body.filters.0.value)"
    )


def test_a_pasted_token_signs_in_and_the_rate_limit_says_when_to_try_again(
    create_app,  # noqa: F811 (the fixtures imported above)
    api_settings,  # noqa: F811
    rt,  # noqa: F811
    browser,
):
    port = free_port()
    settings = api_settings.model_copy(
        update={"public_api_url": f"http://127.0.0.1:{port}", "rate_limit_per_hour": 1}
    )
    user = f"page-{time.monotonic_ns()}"
    token = mint_token(settings, user, ["tags:read"], 600)
    with LoopbackServer(create_app(settings, rt=rt), port) as s:
        context = browser.new_context(base_url=s.url, accept_downloads=True, locale="en-US")
        page = context.new_page()
        page.goto("/")
        # Production: no development token is offered, a pasted one is the way in.
        expect(page.get_by_label("Access token")).to_be_visible()
        expect(page.get_by_role("button", name="Use development token")).to_be_hidden()
        page.get_by_label("Access token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="New export")).to_be_visible()
        expect(page.get_by_label("What to export").locator("option")).to_have_count(1)
        with page.expect_download():
            page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_role("button", name="Export", exact=True).click()
        error = page.locator("#form-error")
        expect(error).to_contain_text("[rate_limited]")
        expect(error).to_contain_text(re.compile(r"try again after \d{1,2}:\d{2}"))
        context.close()


# A tab's visibility as the page reads it, switchable from the test: headless Chromium never
# hides a tab of its own accord.
VISIBILITY = """
let hidden = false;
Object.defineProperty(Document.prototype, "hidden", { get: () => hidden, configurable: true });
window.setTabHidden = (value) => {
  hidden = value;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""


def test_polling_backs_off_pauses_while_hidden_resumes_and_shows_the_failure(
    browser,
    server,
    rt,  # noqa: F811 (the fixtures imported above)
    api_settings,  # noqa: F811
):
    user = user_id()
    job = new_job(rt, user, module="tags")  # no run picks it up: it stays pending
    token = mint_token(api_settings, user, ["tags:read"], 600)
    context = browser.new_context(base_url=server.url, locale="en-US")
    context.add_init_script(VISIBILITY)
    page = context.new_page()
    polls: list[float] = []
    lists: list[float] = []
    status_path = f"/api/exports/{job.id}"
    page.on(
        "request", lambda r: polls.append(time.monotonic()) if r.url.endswith(status_path) else None
    )
    page.on(
        "request", lambda r: lists.append(time.monotonic()) if "/api/exports?" in r.url else None
    )
    page.goto("/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    # Signing in finds the running export and follows it.
    expect(page.locator("#job-state")).to_have_text("Status: waiting to start")
    deadline = time.monotonic() + 15
    while len(polls) < 4:
        assert time.monotonic() < deadline, polls
        page.wait_for_timeout(100)
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    # Every 1 s at first, then slower (1.5x a step up to 5 s).
    assert 0.8 < gaps[0] < 1.6 and gaps[1] > gaps[0] * 1.2, gaps

    page.evaluate("setTabHidden(true)")
    hidden_at = (len(polls), len(lists))
    page.wait_for_timeout(6500)  # longer than the slowest pace and the list's refresh
    assert (len(polls), len(lists)) == hidden_at, "a hidden tab kept polling"

    shown = time.monotonic()
    page.evaluate("setTabHidden(false)")
    page.wait_for_timeout(1000)
    assert len(polls) > hidden_at[0] and polls[hidden_at[0]] - shown < 0.5, polls
    assert len(lists) > hidden_at[1] and lists[hidden_at[1]] - shown < 0.5, lists

    # A failure reads as the server tells it, code included, and is announced.
    message = "the table products no longer has the column weight_kg; export again"
    rt.jobs.finish(job.id, "failed", "source_changed", message)
    expect(page.locator("#job-error")).to_have_text(f"{message} [source_changed]", timeout=8000)
    expect(page.locator("#job-title")).to_have_text("Export ended")
    expect(page.get_by_role("status")).to_have_text("Export status: failed.")
    context.close()


def focused_id(page: Page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def tab_to(page: Page, element_id: str, limit: int = 120) -> None:
    for _ in range(limit):
        if focused_id(page) == element_id:
            return
        page.keyboard.press("Tab")
    pytest.fail(f"#{element_id} was not reached with Tab in {limit} presses")


def test_keyboard_only(page, db_url):
    page.goto("/")
    expect(page.get_by_role("button", name="Use development token")).to_be_visible()
    tab_to(page, "dev-token")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New export")).to_be_visible()
    # From the top of the page, as someone arriving with the keyboard.
    page.evaluate("document.activeElement.blur()")
    tab_to(page, "module")
    before = page.get_by_label("What to export").input_value()
    last = page.evaluate("(s => s.selectedIndex === s.options.length - 1)(document.activeElement)")
    page.keyboard.press("ArrowUp" if last else "ArrowDown")
    after = page.get_by_label("What to export").input_value()
    assert after != before
    # Focus is visible: the outline the style sheet gives to keyboard focus.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    tab_to(page, "export-button")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    assert info.value.suggested_filename.startswith(f"{after}-export-")


def serious(results) -> list[str]:
    # axe ran its rules on the page (an empty result would also have no violations).
    assert len(results.response["passes"]) > 10
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_accessible_in_light_and_dark_and_at_phone_width(page, tmp_path):
    axe = Axe()
    page.goto("/")
    expect(page.get_by_role("button", name="Use development token")).to_be_visible()
    assert serious(axe.run(page)) == []
    page.get_by_role("button", name="Use development token").click()
    choose_tag_columns(page)
    page.get_by_role("button", name="Add a filter").click()
    page.get_by_label("Column", exact=True).select_option("usage_count")
    page.get_by_label("Condition", exact=True).select_option("gte")
    page.get_by_label("Value", exact=True).fill("5000")
    expect(page.locator("#preview")).to_contain_text("rows — downloads now")
    page.get_by_role("button", name="Export", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Downloaded")
    expect(page.locator("#history-rows tr").first).to_be_visible()
    assert serious(axe.run(page)) == []
    screenshot(page, tmp_path, "export-page.png")

    page.emulate_media(color_scheme="dark")
    assert serious(axe.run(page)) == []

    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    assert serious(axe.run(page)) == []
    # Nothing wider than the phone's screen but the table, which scrolls in its own box.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    screenshot(page, tmp_path, "export-page-375.png")


def test_a_related_sheet_is_offered_and_comes_as_a_zip(page, server, db_url, tmp_path):
    sign_in(page)
    page.get_by_label("What to export").select_option("tags")
    expect(page.locator("#relations-field")).to_be_hidden()
    page.get_by_label("What to export").select_option("products")
    page.get_by_label("Tags", exact=True).check()
    with page.expect_download() as info:
        page.get_by_role("button", name="Export", exact=True).click()
    download = info.value
    assert download.suggested_filename.endswith(".zip")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with zipfile.ZipFile(path) as archive, psycopg.connect(db_url) as conn:
        assert archive.namelist() == ["products.csv", "Tags.csv"]
        text = archive.read("Tags.csv").decode()
        links = conn.execute("SELECT count(*) FROM product_tags").fetchone()[0]
    assert len(list(csv.reader(io.StringIO(text, newline="")))) - 1 == links
