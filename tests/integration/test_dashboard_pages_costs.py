"""The Costs page through Starlette's TestClient, on SQLite and PostgreSQL: by day, by
name/agent/principal/model and kind, the plan comparison from $ROTA_PLANS with its
dropped-by-cap runs and forecast, shared budgets against their limits, and a bad time
range as a 400 page naming the parameter."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dashboard_client import signed_in

from rota import Agent, App, FakeClock, Price
from rota.testing import ScriptedModel, answer

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86_400.0
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


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = App(database_url, clock=FakeClock(START))
    built.principal("watcher", kind="user", roles=["viewer"])
    built.principal("svc", kind="service")
    model = ScriptedModel("costs-model", script=[answer("reviewed")])
    reviewer = Agent("reviewer", model, "Review.", price=Price(Decimal(3), Decimal(15)))
    built.agent(reviewer, run_as="svc")
    built.budget(agent="reviewer", usd=1, per="day")
    built.budget(agent="reviewer", requests=10, per="month")

    @built.job
    def hello(ctx: Any, payload: Any) -> str:
        return "hi"

    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def history(app: App) -> App:
    """Two reviews and a job run a day, on three days; the page is read a day later."""
    for _ in range(3):
        for _ in range(2):
            app.run_now("reviewer", "review")
        app.run_now("hello", {})
        app.drain()
        app.clock.advance(DAY)
    return app


@pytest.fixture
def plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "plans.toml"
    path.write_text(PLANS)
    monkeypatch.setenv("ROTA_PLANS", str(path))
    return path


def section(page: str, label: str) -> str:
    """The text of the page's section with this aria-label."""
    start = page.index(f'aria-label="{label}"')
    body = page[start : page.index("</section>", start)]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_the_costs_page_shows_each_breakdown_with_its_chart(history: App) -> None:
    with signed_in(history, "watcher") as client:
        page = client.get("/costs").text
    assert "9 runs" in section(page, "totals") and "6 AI runs" in section(page, "totals")
    by_day = section(page, "by day")
    for day in ("2027-01-15", "2027-01-16", "2027-01-17"):
        assert day in by_day
    assert "reviewer" in section(page, "by name") and "hello" in section(page, "by name")
    kinds = section(page, "by kind")
    assert re.search(r"agent 6 ", kinds) and re.search(r"job 3 ", kinds)
    assert "svc" in section(page, "by principal")
    assert "scripted:costs-model 6 6" in section(page, "by model")
    assert page.count('<svg class="chart"') == 8  # one beside each table
    assert re.search(r"<title>2027-01-16: 0\.\d+ USD</title>", page)


def test_the_plan_comparison_lists_dropped_runs_and_the_forecast(history: App, plans: Path) -> None:
    with signed_in(history, "watcher") as client:
        page = client.get("/costs").text
    compared = section(page, "plan comparison")
    assert "($ROTA_PLANS)" in compared
    for name, kind in (("pay-as-you-go", "api"), ("team", "subscription"), ("sessions", "session")):
        assert re.search(rf"{name}( cheapest)? {kind} \$", compared), name
    team = re.search(r'data-plan="team">(.*?)</tr>', page, re.S)
    assert team is not None
    assert re.findall(r'class="num">(\d+)</td>', team[1]) == ["3"]  # one review a day dropped
    dropped = compared[compared.index("Runs dropped") :]
    assert dropped.count("max_runs_per_day") == 3
    ids = re.findall(r'<tr data-href="/runs/([^"]+)"><td>team</td>', page)
    assert len(ids) == 3 and all(history.store.get_run(i).name == "reviewer" for i in ids)
    assert "Forecast: the next 30 days" in compared and "over 3 days" in compared
    assert "n/a" not in compared


def test_without_rota_plans_the_list_price_is_compared_and_the_page_says_how(
    history: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROTA_PLANS", raising=False)
    with signed_in(history, "watcher") as client:
        compared = section(client.get("/costs").text, "plan comparison")
    assert "(list price only)" in compared and "point ROTA_PLANS at a plan file" in compared
    assert re.search(r"api cheapest api \$", compared)


def test_a_plan_file_that_does_not_load_is_said_not_a_5xx(
    history: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nkind = "flatrate"\n')
    monkeypatch.setenv("ROTA_PLANS", str(broken))
    with signed_in(history, "watcher") as client:
        answer_ = client.get("/costs")
    assert answer_.status_code == 200
    compared = section(answer_.text, "plan comparison")
    assert "the plan file in $ROTA_PLANS does not load (the server log says why)" in compared
    assert str(broken) not in answer_.text  # a server path is not shown


def test_budgets_show_use_against_each_limit(history: App) -> None:
    history.clock.advance(-DAY)  # back in the last day with runs: its budget period
    with signed_in(history, "watcher") as client:
        budgets = section(client.get("/costs").text, "budgets")
    assert re.search(
        r"agent:reviewer per day 2027-01-17 \$1\.00 \$0\.0\d+ \$0\.00 \d+\.\d%", budgets
    )
    assert "agent:reviewer per month 2027-01 10 requests 6 0 60.0%" in budgets


def test_the_time_range_filters_the_runs(history: App) -> None:
    with signed_in(history, "watcher") as client:
        one_day = client.get("/costs?since=2027-01-16T00:00Z&until=2027-01-17T00:00Z").text
        blank = client.get("/costs?since=&until=").text
    assert "3 runs" in section(one_day, "totals")
    assert "9 runs" in section(blank, "totals")  # empty fields: the default range


def test_an_empty_range_says_what_to_do(app: App) -> None:
    with signed_in(app, "watcher") as client:
        page = client.get("/costs").text
    assert "No run started in this range" in html.unescape(page)
    assert "No shared budget" not in page  # the app declares two


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("/costs?since=yesterday", "query parameter since must be a duration ago"),
        ("/costs?until=%00", "query parameter until must be a duration ago"),
        ("/costs?since=99999d", "query parameter since must be"),
        ("/costs?since=1d&until=2d", "query parameter since (2027-01-14"),
        ("/costs?since=1d&since=2d", "query parameter since is given more than once"),
        ("/costs?by=model", "unknown query parameter 'by'"),
    ],
)
def test_a_bad_range_is_a_400_naming_the_parameter(app: App, target: str, names: str) -> None:
    with signed_in(app, "watcher") as client:
        answer_ = client.get(target)
    assert answer_.status_code == 400, answer_.text[:300]
    assert names in html.unescape(answer_.text)
    assert "Traceback" not in answer_.text
