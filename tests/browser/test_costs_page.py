"""The Costs page in a real browser, on SQLite and PostgreSQL: the plan comparison from
$ROTA_PLANS (api, subscription, session) with the runs a cap dropped and the forecast,
the charts beside their tables, budgets against their limits, and a bad range refused."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import dashboard_app
import pytest
from browser_support import Server, _off_the_loop
from playwright.sync_api import Page, expect

Shot = Callable[[Page, str], Path]
SignIn = Callable[[str], Page]
PLANS = """
[[plans]]
name = "pay-as-you-go"
kind = "api"

[[plans]]
name = "team"
kind = "subscription"
monthly_fee = 20
max_runs_per_day = 1

[[plans]]
name = "sessions"
kind = "session"
session_usd_per_hour = 0.08
"""


@pytest.fixture(scope="module", autouse=True)
def plans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$ROTA_PLANS for the server this module starts (autouse: set before it starts)."""
    path = tmp_path_factory.mktemp("plans") / "plans.toml"
    path.write_text(PLANS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROTA_PLANS", str(path))
        yield path
    assert "ROTA_PLANS" not in os.environ or os.environ["ROTA_PLANS"] != str(path)


@pytest.fixture(scope="module")
def spent(server: Server) -> None:
    """Two priced triager runs, each approved by root, so there is something to bill."""

    def run() -> None:
        app = dashboard_app.build(server.database_url)
        try:
            for _ in range(2):
                app.run_now("triager", "acme asks for a refund")
            app.drain()
            for request in app.store.approvals():
                app.store.decide_approval(request.id, "root", True, "ok", app.clock.now(), via="t")
            app.drain()
        finally:
            app.close()

    _off_the_loop(run)


def test_the_costs_page_shows_the_plan_comparison(
    spent: None, signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    page.goto(server.page_url("/costs"))
    plans = page.get_by_role("table", name="plans")
    for name, kind in (("pay-as-you-go", "api"), ("team", "subscription"), ("sessions", "session")):
        expect(plans.locator(f'tr[data-plan="{name}"]')).to_contain_text(kind)
    team = plans.locator('tr[data-plan="team"] td')
    # The seed's reviewer run came first today: both triager runs were over the cap.
    expect(team.nth(8)).to_have_text("2")
    dropped = page.get_by_role("table", name="dropped runs")
    expect(dropped.locator("tbody tr")).to_have_count(2)
    expect(dropped).to_contain_text("max_runs_per_day")
    expect(dropped).to_contain_text("triager")
    comparison = page.get_by_role("region", name="plan comparison")
    expect(comparison.locator("svg.chart rect.bar")).to_have_count(3)
    expect(comparison).to_contain_text("($ROTA_PLANS)")
    expect(comparison.locator(".forecast-note")).to_contain_text("no forecast")
    kinds = page.get_by_role("table", name="by kind")
    expect(kinds).to_contain_text("agent")
    expect(page.get_by_role("table", name="by model")).to_contain_text("scripted:dashboard-triager")
    expect(page.get_by_role("table", name="budgets")).to_contain_text("agent:triager")
    expect(page.get_by_role("table", name="budgets")).to_contain_text(re.compile(r"\$5\.00"))
    screenshot(page, "costs")
    dropped.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+$"))


def test_a_bad_range_is_a_400_naming_it(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    page.goto(server.page_url("/costs"))
    page.fill("input[name=since]", "last tuesday")
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    expect(page.locator("h1")).to_have_text("Bad request")
    expect(page.locator(".message")).to_contain_text("query parameter since must be a duration")
    screenshot(page, "bad-range")
    page.goto(server.page_url("/costs?since=7d"))
    expect(page.get_by_role("region", name="totals")).to_contain_text("runs")
