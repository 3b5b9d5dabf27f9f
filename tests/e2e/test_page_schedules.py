"""The export page's schedules in Chromium: save the dialog's export as a schedule with the
keyboard, see it listed with its next run, pause, resume and delete it."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from flows.orchestration.export_flow import export_flow
from flows.orchestration.scheduled_flow import scheduled_export

# The page tests' fixtures: a uvicorn server in development and a watched tab.
from tests.api.conftest import api_settings, create_app, rt  # noqa: F401
from tests.e2e.test_page import choose_tag_columns, page, serious, server, sign_in  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def deployments(harness):
    """The deployments a saved schedule hangs on (nothing serves them here)."""
    export_flow.to_deployment(name="export").apply()
    scheduled_export.to_deployment(name="scheduled-export").apply()


@pytest.mark.parametrize("server", [{"max_schedules_per_user": 1000}], indirect=True)
def test_schedule_the_export_then_pause_resume_and_delete_it(deployments, page, server):  # noqa: F811
    sign_in(page)
    choose_tag_columns(page)
    page.get_by_label("Name", exact=True).fill("Tags at dawn")
    page.get_by_label("When (cron)").fill("* * * * *")
    page.get_by_label("When (cron)").press("Enter")  # saves the schedule, exports nothing
    error = page.locator("#schedule-error")
    expect(error).to_contain_text("cron_too_frequent")
    expect(page.get_by_label("When (cron)")).to_be_focused()
    expect(page.get_by_label("When (cron)")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("When (cron)").fill("15 5 * * 1-5")
    page.get_by_label("Time zone of the timetable").fill("Europe/Paris")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule “Tags at dawn” saved.")
    expect(error).to_be_hidden()
    row = page.locator("#schedules-rows tr", has_text="Tags at dawn")
    expect(row).to_contain_text("15 5 * * 1-5 (Europe/Paris)")
    expect(row).to_contain_text("Active")
    expect(row.locator("td").nth(3)).not_to_have_text("–")  # the next run
    assert serious(Axe().run(page)) == []

    row.get_by_role("button", name="Pause the schedule Tags at dawn").click()
    expect(row).to_contain_text("Paused")
    expect(row.locator("td").nth(3)).to_have_text("–")
    row.get_by_role("button", name="Resume the schedule Tags at dawn").focus()
    page.keyboard.press("Enter")
    expect(row).to_contain_text("Active")

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete the schedule Tags at dawn").click()
    expect(page.get_by_role("status")).to_have_text("Schedule “Tags at dawn” deleted.")
    expect(row).to_have_count(0)
