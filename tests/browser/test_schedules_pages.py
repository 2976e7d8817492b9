"""The Schedules pages in a real browser, on SQLite and PostgreSQL: an operator pauses and
resumes a schedule, previews a backfill and confirms it; a viewer sees no such buttons and
the server refuses its pause."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import dashboard_app
import pytest
from browser_support import Server, _off_the_loop
from playwright.sync_api import Page, expect

from rota.scheduler import Scheduler

Shot = Callable[[Page, str], Path]
SignIn = Callable[[str], Page]


@pytest.fixture(scope="module", autouse=True)
def registered(server: Server) -> None:
    """The app's schedule registered in the served database, as a scheduler would."""

    def sync() -> None:
        app = dashboard_app.build(server.database_url)
        try:
            Scheduler(app).sync()
        finally:
            app.close()

    _off_the_loop(sync)


def test_an_operator_pauses_and_resumes_a_schedule(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("operator")
    page.goto(server.page_url("/schedules"))
    row = page.locator('tr[data-schedule="hourly_sync"]')
    expect(row).to_contain_text("every 1h")
    expect(row.locator(".badge").first).to_have_text("active")
    expect(row).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:00:00Z"))  # next fires
    row.get_by_role("button", name="Pause").click()
    expect(page).to_have_url(server.page_url("/schedules"))
    expect(row.locator(".badge").first).to_have_text("paused")
    expect(row).to_contain_text("none while paused")
    screenshot(page, "paused")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".badge").first).to_have_text("active")
    page.goto(server.page_url("/audit?action=schedule.changed"))
    expect(page.get_by_role("table", name="audit records")).to_contain_text("ops")


def test_a_backfill_is_previewed_then_confirmed(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("operator")
    page.goto(server.page_url("/schedules/hourly_sync"))
    page.fill("#backfill-start", "2027-01-01T00:00")
    page.fill("#backfill-end", "2027-01-02T00:00")
    page.get_by_role("button", name="Preview").click()
    expect(page).to_have_url(re.compile(r"/schedules/hourly_sync/backfill\?start=2027"))
    preview = page.get_by_role("region", name="preview")
    expect(preview.locator(".figure", has_text="runs to enqueue").locator(".value")).to_have_text(
        "24"
    )
    expect(preview).to_contain_text("2027-01-01T00:00:00.000Z")
    expect(preview).to_contain_text("2027-01-01T23:00:00.000Z")
    screenshot(page, "backfill-preview")
    page.get_by_role("button", name="Enqueue 24 run(s)").click()
    expect(page).to_have_url(server.page_url("/schedules/hourly_sync?backfilled=24"))
    expect(page.get_by_role("status")).to_have_text("Backfill: 24 run(s) enqueued.")
    last = page.get_by_role("table", name="last runs")
    expect(last.locator("tbody tr")).to_have_count(10)
    expect(last).to_contain_text("backfill")
    screenshot(page, "backfilled")
    last.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))


def test_a_viewer_cannot_pause(signed_in: SignIn, server: Server) -> None:
    page = signed_in("viewer")
    page.goto(server.page_url("/schedules"))
    row = page.locator('tr[data-schedule="hourly_sync"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)
    csrf = page.locator(".who input[name=csrf]").input_value()
    refused = page.request.post(
        server.page_url("/schedules/hourly_sync/pause"), form={"csrf": csrf}, max_redirects=0
    )
    assert refused.status == 403
    assert "lacks the role 'operator'" in refused.text().replace("&#39;", "'")
    page.reload()
    expect(row.locator(".badge").first).to_have_text("active")
