"""`rota cost report|compare`, end to end on both databases: a history recorded by real runs
(a job, and an agent on a scripted model, at set times on a fake clock), read back by the
CLI and billed under a subscription plan and a session plan, checked against figures
computed by hand. Bad input (plan files, price files, windows) gives one clear line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rota import Agent, App, FakeClock, RunState
from rota.agents.types import ModelRequest, Usage
from rota.cli import app as cli
from rota.cost import Price, RunCost, compare, load_plans
from rota.cost.history import load_history
from rota.testing import ScriptedModel, say

SINCE, UNTIL = "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"  # March, whole: one full fee
JOB_TIMES = ["2026-03-02T09:00", "2026-03-03T09:00", "2026-03-04T09:00"]
AGENT_TIMES = ["2026-03-02T10:00", "2026-03-02T11:00", "2026-03-03T10:00", "2026-03-05T10:00"]

SUBSCRIPTION = """\
name = "team"
kind = "subscription"
monthly_fee = 20
max_runs_per_day = 1
compute_usd_per_hour = 0.10
"""
SESSIONS = """\
name = "sessions"
kind = "session"
session_usd_per_hour = 0.6
min_session_seconds = 90
compute_usd_per_hour = 0.10
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ROTA_DATABASE_URL", "ROTA_APP", "ROTA_PRICES"):
        monkeypatch.delenv(var, raising=False)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def history(database_url: str) -> Iterator[dict[str, list[str]]]:
    """3 job runs of 120 s of compute, and 4 agent runs of one model call each (1,000 input
    + 200 output tokens at $3/$15 per million: $0.006) taking 60 s of session."""
    clock = FakeClock(_at(JOB_TIMES[0]))
    app = App(database_url, clock=clock)

    @app.job
    def crunch(ctx: Any) -> None:
        clock.advance(120)

    def reply(request: ModelRequest, turn: int) -> Any:
        clock.advance(60)
        return say("approved")

    model = ScriptedModel("reviewer", fn=reply, tokens=(1000, 200))
    app.agent(Agent("reviewer", model, "Review.", price=Price(input=3, output=15)))
    ids: dict[str, list[str]] = {"crunch": [], "reviewer": []}
    try:
        for when, name in sorted(
            [(t, "crunch") for t in JOB_TIMES] + [(t, "reviewer") for t in AGENT_TIMES]
        ):
            clock.set(_at(when))
            handle = app.run_now(name, "go")
            app.drain(concurrency=1, prefetch=0, lease_s=10_000)
            assert handle.get().state == RunState.SUCCEEDED
            ids[name].append(handle.id)
        yield ids
    finally:
        app.close()


def rota(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


@pytest.fixture
def plans(tmp_path: Path) -> list[str]:
    (tmp_path / "sub.toml").write_text(SUBSCRIPTION)
    (tmp_path / "session.toml").write_text(SESSIONS)
    return ["--plan", str(tmp_path / "sub.toml"), "--plan", str(tmp_path / "session.toml")]


def test_compare_prints_both_totals_the_dropped_runs_and_the_cheaper_plan(
    database_url: str, history: dict[str, list[str]], plans: list[str]
) -> None:
    result = rota(database_url, "cost", "compare", *plans, "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 0, result.output
    text = result.stdout
    # team: the fee, 20 x 31/31 of March = $20; the 2nd agent run of 2 March is over
    # max_runs_per_day and dropped; covered runs pay no tokens; compute 3 x 120 s at $0.10/h
    # = $0.01. Total $20.01.
    # sessions: 4 runs x max(60, 90) s at $0.60/h = 4 x $0.015 = $0.06; tokens 4 x $0.006
    # = $0.024; compute $0.01. Total $0.094.
    table = [line.split() for line in text.splitlines()]
    rows = {cells[0]: cells for cells in table if cells and cells[0] in ("team", "sessions")}
    assert rows["team"][1:9] == [
        "subscription", "$20.0100", "$20.0000", "$0.0000", "$0.0000", "$0.0100", "$0.0000", "1",
    ]  # fmt: skip
    assert rows["sessions"][1:9] == [
        "session", "$0.0940", "$0.0000", "$0.0240", "$0.0600", "$0.0100", "$0.0000", "0",
    ]  # fmt: skip
    dropped = history["reviewer"][1]
    assert f"dropped by team: run {dropped} (reviewer) at 2026-03-02T11:00:00Z: " in text
    assert "max_runs_per_day used up" in text
    assert "cheapest: sessions ($0.0940)" in text
    assert text.startswith(
        "7 runs (4 with model calls or agent sessions) started "
        "2026-03-01T00:00:00Z .. 2026-04-01T00:00:00Z"
    )

    data = json.loads(
        rota(
            database_url, "cost", "compare", *plans, "--since", SINCE, "--until", UNTIL, "--json"
        ).stdout
    )
    totals = {p["name"]: Decimal(p["total_usd"]) for p in data["plans"]}
    assert totals == {"team": Decimal("20.01"), "sessions": Decimal("0.094")}
    assert (data["cheapest"], data["cheapest_complete"], data["runs"], data["ai_runs"]) == (
        "sessions",
        "sessions",
        7,
        4,
    )
    team = next(p for p in data["plans"] if p["name"] == "team")
    assert [(d["run_id"], d["limit"]) for d in team["dropped"]] == [(dropped, "max_runs_per_day")]
    # The forecast is the one the pure functions give for the history as computed by hand:
    # so the store's records are exactly these.
    expected = compare(
        [p for f in plans[1::2] for p in load_plans(f)],
        _hand_records(history),
        _table(),
        window=(_at("2026-03-01T00:00"), _at("2026-04-01T00:00")),
    )
    assert {p["name"]: p["forecast"]["total_usd"] for p in data["plans"]} == {
        r.name: str(r.forecast.total) for r in expected.results
    }


def _hand_records(ids: dict[str, list[str]]) -> list[RunCost]:
    jobs = [
        RunCost(i, "crunch", "job", _at(t), trigger="manual", compute_seconds=Decimal(120))
        for i, t in zip(ids["crunch"], JOB_TIMES, strict=True)
    ]
    agents = [
        RunCost(
            i,
            "reviewer",
            "agent",
            _at(t),
            trigger="manual",
            agent="reviewer",
            usage={"scripted:reviewer": Usage(1000, 200)},
            session_seconds=Decimal(60),
        )
        for i, t in zip(ids["reviewer"], AGENT_TIMES, strict=True)
    ]
    return jobs + agents


def _table() -> Any:
    from rota.cost.prices import PriceOverride, PriceTable

    return PriceTable([PriceOverride("scripted:reviewer", Price(input=3, output=15))])


def test_the_loaded_history_is_the_hand_computed_one(
    database_url: str, history: dict[str, list[str]]
) -> None:
    from rota.storage import SqlStore

    store = SqlStore(database_url)
    try:
        loaded = load_history(store, _at("2026-03-01T00:00"), _at("2026-04-01T00:00"))
    finally:
        store.close()
    assert sorted(loaded.records, key=lambda r: r.run_id) == sorted(
        _hand_records(history), key=lambda r: r.run_id
    )


def test_report_by_kind_as_table_json_and_csv(
    database_url: str, history: dict[str, list[str]]
) -> None:
    window = ["--since", SINCE, "--until", UNTIL, "--compute-usd-per-hour", "0.10"]
    data = json.loads(
        rota(database_url, "cost", "report", "--by", "kind", *window, "--json").stdout
    )
    rows = {r["key"]: r for r in data["rows"]}
    assert rows["agent"] == {
        "key": "agent",
        "runs": 4,
        "requests": 4,
        "input_tokens": 4000,
        "output_tokens": 800,
        "cache_write_tokens": 0,
        "cache_read_tokens": 0,
        "reasoning_tokens": 0,
        "tool_calls": 0,
        "session_seconds": "240",
        "compute_seconds": "0",
        "tokens_usd": "0.024",
        "compute_usd": "0",
        "total_usd": "0.024",
    }
    assert (rows["job"]["runs"], rows["job"]["compute_seconds"], rows["job"]["total_usd"]) == (
        3,
        "360",
        "0.01",
    )

    result = rota(database_url, "cost", "report", "--by", "day", *window, "--csv")
    assert result.exit_code == 0, result.output
    days = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(d["day"], d["runs"], d["tokens_usd"]) for d in days] == [
        ("2026-03-02", "3", "0.012"),
        ("2026-03-03", "2", "0.006"),
        ("2026-03-04", "1", "0"),
        ("2026-03-05", "1", "0.006"),
    ]

    table = rota(database_url, "cost", "report", "--by", "workflow", *window)
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.stdout.splitlines()]
    assert lines[1][:3] == ["reviewer", "4", "4"] and lines[1][-1] == "$0.0240"
    assert lines[2][:2] == ["crunch", "3"] and lines[2][-1] == "$0.0100"


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            'name = "team"\nkind = "subscription"\n',
            "error: plan.toml: field 'monthly_fee' is required",
        ),
        (
            'name = "team"\nkind = "subscription"\nmonthly_fee = -20\n',
            "error: plan.toml: field 'monthly_fee' must be >= 0, got -20",
        ),
        (
            'name = "s"\nkind = "session"\nsession_usd_per_hour = 1\nmin_seconds = 5\n',
            "error: plan.toml: unknown field 'min_seconds' (see docs/cost.md for the fields)",
        ),
    ],
)
def test_a_bad_plan_file_is_one_clear_line_and_exit_2(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: str, message: str
) -> None:
    App(sqlite_url).store.close()
    monkeypatch.chdir(tmp_path)
    Path("plan.toml").write_text(plan)
    result = rota(sqlite_url, "cost", "compare", "--plan", "plan.toml")
    assert result.exit_code == 2
    assert result.stderr.strip().replace("\n", " ").startswith(message)


def test_bad_price_files_and_windows_are_clear_errors(sqlite_url: str, tmp_path: Path) -> None:
    App(sqlite_url).store.close()
    prices = tmp_path / "prices.toml"
    prices.write_text('[[prices]]\nmodel = "gemini:pro"\ninput = 1\noutput = 2\n')
    result = rota(sqlite_url, "cost", "report", "--prices", str(prices))
    assert result.exit_code == 2
    assert f"{prices}: prices[0]: model 'gemini:pro': no provider 'gemini'" in _one_line(result)

    result = rota(sqlite_url, "cost", "report", "--since", SINCE, "--until", "2026-02-01")
    assert result.exit_code == 2
    assert "--since (2026-03-01T00:00:00Z) must be before --until" in _one_line(result)

    result = rota(sqlite_url, "cost", "report", "--by", "color")
    assert result.exit_code == 2
    assert "--by 'color': group by one of workflow, agent, principal, day, kind" in _one_line(
        result
    )


def _one_line(result: Result) -> str:
    return " ".join(result.stderr.split())


# -- the forecast --------------------------------------------------------------------------


def test_the_forecast_is_the_same_whatever_since_and_says_what_it_was_fitted_on(
    database_url: str, history: dict[str, list[str]], plans: list[str]
) -> None:
    # The runs are on 2-5 March; reading from 1 March, 1 February or 1 January adds days
    # before the first run, which are not history and must not bend the trend.
    forecasts = []
    for since in (SINCE, "2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"):
        result = rota(
            database_url, "cost", "compare", *plans, "--since", since, "--until", UNTIL, "--json"
        )
        assert result.exit_code == 0, result.output
        forecasts.append({p["name"]: p["forecast"] for p in json.loads(result.stdout)["plans"]})
    assert forecasts[1] == forecasts[0] and forecasts[2] == forecasts[0]
    sessions = forecasts[0]["sessions"]
    assert sessions["basis"] == {"days": 4, "from": "2026-03-02", "to": "2026-03-05"}
    low, total, high = (Decimal(sessions[k]) for k in ("low_usd", "total_usd", "high_usd"))
    assert 0 <= low <= total <= high

    text = rota(database_url, "cost", "compare", *plans, "--since", "2026-01-01T00:00:00Z").stdout
    assert (
        "next 30d: a straight line fitted to the daily cost of 4 days, 2026-03-02 .. "
        "2026-03-05 (the first to the last day with runs); 95% prediction interval:"
    ) in text
    assert f"  sessions: ${round(total, 4)} (${round(low, 4)} .. ${round(high, 4)})" in text


def test_less_than_three_days_of_history_gives_no_forecast_and_everything_else(
    database_url: str, history: dict[str, list[str]], plans: list[str]
) -> None:
    window = ["--since", SINCE, "--until", "2026-03-04T00:00:00Z"]  # runs on 2 and 3 March
    result = rota(database_url, "cost", "compare", *plans, *window)
    assert result.exit_code == 0, result.output
    text = result.stdout
    rows = {cells[0]: cells for cells in (line.split() for line in text.splitlines()) if cells}
    assert rows["sessions"][1] == "session" and rows["sessions"][-1] == "n/a"
    assert rows["team"][-1] == "n/a"
    assert "cheapest: sessions" in text
    assert (
        "no forecast: the history covers 2 days (2026-03-02 .. 2026-03-03, from the first day "
        "with runs to the last); a trend needs at least 3"
    ) in " ".join(text.split())

    data = json.loads(rota(database_url, "cost", "compare", *plans, *window, "--json").stdout)
    forecast = {p["name"]: p["forecast"] for p in data["plans"]}["team"]
    assert forecast["total_usd"] is None
    assert forecast["refused"].startswith("no forecast: the history covers 2 days")
