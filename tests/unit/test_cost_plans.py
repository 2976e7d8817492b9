"""Billing plans over a recorded history: hand-computed totals, caps that drop runs,
session minimums, the cheapest plan, the forecast, reports, and bad plan files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from rota.agents.types import Usage
from rota.cost import (
    ApiPlan,
    PriceTable,
    RunCost,
    SessionPlan,
    SubscriptionPlan,
    compare,
    evaluate,
    forecast,
    load_plans,
    parse_plan,
    price_history,
    report,
)
from rota.cost.compare import month_shares
from rota.errors import ConfigError, ConfigFileError, UnknownPrice

# One simple model price so every figure below is easy to check by hand:
# $1 per million input tokens, $2 per million output tokens.
TABLE = PriceTable.from_config({"prices": [{"model": "scripted:bot", "input": 1, "output": 2}]})
# 100k in + 50k out = 0.10 + 0.10 = $0.20 per AI run
TOKENS = {"scripted:bot": Usage(input_tokens=100_000, output_tokens=50_000)}
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def agent(run_id: str, when: datetime, session: int) -> RunCost:
    return RunCost(
        run_id,
        "triage",
        "agent",
        when,
        principal="svc-support",
        agent="triage",
        usage=TOKENS,
        session_seconds=Decimal(session),
    )


# Seven AI runs ($0.20 of tokens each = $1.40), one job and one hybrid with compute.
HISTORY = [
    agent("a1", at(2, 9), 120),
    agent("a2", at(2, 10), 30),
    agent("a3", at(2, 11), 600),
    agent("a4", at(2, 12), 45),
    RunCost(
        "j1", "sweep", "job", at(2, 13), principal="svc-billing", compute_seconds=Decimal(3600)
    ),
    agent("b1", at(3, 9), 90),
    agent("b2", at(3, 9, 30), 20),
    RunCost(
        "h1",
        "bill",
        "hybrid",
        at(3, 10),
        principal="svc-billing",
        agent="reviewer",
        usage=TOKENS,
        session_seconds=Decimal(60),
        compute_seconds=Decimal(1800),
    ),
]
# compute: (3600 + 1800) s = 1.5 h at $0.10/h = $0.15 in every plan
API = ApiPlan(name="api", compute_usd_per_hour=Decimal("0.10"))
SUBSCRIPTION = SubscriptionPlan(
    name="team",
    monthly_fee=Decimal(1),
    max_runs_per_day=3,
    max_runs_per_hour=1,
    compute_usd_per_hour=Decimal("0.10"),
)
SESSIONS = SessionPlan(
    name="sessions",
    session_usd_per_hour=Decimal("0.36"),
    min_session_seconds=Decimal(60),
    compute_usd_per_hour=Decimal("0.10"),
)


def test_list_price_of_each_run() -> None:
    priced = price_history(reversed(HISTORY), TABLE)
    assert [p.record.run_id for p in priced] == ["a1", "a2", "a3", "a4", "j1", "b1", "b2", "h1"]
    assert [p.tokens_usd for p in priced] == [Decimal("0.2")] * 4 + [0] + [Decimal("0.2")] * 3


def test_api_plan_is_tokens_at_list_price_plus_compute() -> None:
    result = evaluate(API, HISTORY, TABLE, window=MARCH)
    # tokens 7 * 0.20 = 1.40; compute 1.5 h * 0.10 = 0.15
    assert (result.breakdown.tokens, result.breakdown.compute) == (Decimal("1.4"), Decimal("0.15"))
    assert result.total == Decimal("1.55")
    assert result.dropped == () and result.monthly == {"2026-03": Decimal("1.55")}


def test_subscription_caps_drop_the_runs_past_them_in_start_order() -> None:
    result = evaluate(SUBSCRIPTION, HISTORY, TABLE, window=MARCH)
    # 2 March: a1 09:00, a2 10:00, a3 11:00 fit (3 a day); a4 12:00 is the 4th -> dropped.
    #          j1 is a job: plans bill its compute, caps do not count it.
    # 3 March: b1 09:00 fits; b2 09:30 is the 2nd in the 09 hour (1 an hour) -> dropped;
    #          h1 10:00 fits.
    assert [(d.run_id, d.limit) for d in result.dropped] == [
        ("a4", "max_runs_per_day"),
        ("b2", "max_runs_per_hour"),
    ]
    # fee 1.00 (the whole of March) + compute 0.15; tokens covered by the fee
    assert result.breakdown.fees == 1 and result.breakdown.tokens == 0
    assert result.total == Decimal("1.15")


def test_subscription_overage_bills_the_runs_past_the_caps() -> None:
    plan = SubscriptionPlan(
        name="team+",
        monthly_fee=Decimal(1),
        max_runs_per_day=3,
        max_runs_per_hour=1,
        over_cap="overage",
        overage_per_run=Decimal("0.05"),
        compute_usd_per_hour=Decimal("0.10"),
    )
    result = evaluate(plan, HISTORY, TABLE, window=MARCH)
    assert [r.run_id for r in result.overage_runs] == ["a4", "b2"] and result.dropped == ()
    # each: 0.05 + its tokens at list price 0.20 = 0.25; two of them = 0.50
    assert result.breakdown.overage == Decimal("0.5")
    assert result.total == Decimal("1.65")  # 1.00 + 0.15 + 0.50
    flat = SubscriptionPlan(
        name="team flat",
        monthly_fee=Decimal(1),
        max_runs_per_day=3,
        max_runs_per_hour=1,
        over_cap="overage",
        overage_per_run=Decimal("0.05"),
        overage_usd_per_mtok=Decimal(1),
    )
    # 150k tokens at $1/M = 0.15, + 0.05 = 0.20 each; no compute rate in this plan
    assert evaluate(flat, HISTORY, TABLE, window=MARCH).total == Decimal("1.4")  # 1 + 0.40


def test_included_runs_are_a_monthly_allowance() -> None:
    plan = SubscriptionPlan(name="starter", monthly_fee=Decimal(1), included_runs=4)
    result = evaluate(plan, HISTORY, TABLE, window=MARCH)
    # a1..a4 use the 4 included runs; b1, b2, h1 start with none left
    assert [(d.run_id, d.limit) for d in result.dropped] == [
        ("b1", "included_runs"),
        ("b2", "included_runs"),
        ("h1", "included_runs"),
    ]


def test_included_usage_is_checked_when_a_run_starts() -> None:
    plan = SubscriptionPlan(name="usd", monthly_fee=Decimal(1), included_usd=Decimal("0.5"))
    result = evaluate(plan, HISTORY, TABLE, window=MARCH)
    # used before each run: a1 0.00, a2 0.20, a3 0.40 (< 0.50: runs, and is covered whole,
    # ending at 0.60); a4 starts at 0.60 >= 0.50 -> dropped, and so is every later AI run
    assert [d.run_id for d in result.dropped] == ["a4", "b1", "b2", "h1"]
    tokens = SubscriptionPlan(name="tok", monthly_fee=Decimal(1), included_tokens=300_000)
    # 150k tokens a run: a1 (0), a2 (150k) fit; a3 starts at 300k -> dropped
    assert evaluate(tokens, HISTORY, TABLE, window=MARCH).dropped[0].run_id == "a3"


def test_session_plan_bills_each_session_at_least_its_minimum() -> None:
    result = evaluate(SESSIONS, HISTORY, TABLE, window=MARCH)
    # billed seconds: a1 120, a2 30->60, a3 600, a4 45->60, b1 90, b2 20->60, h1 60 = 1050;
    # 1050 s * 0.36 $/h / 3600 = 0.105. The job j1 holds no session.
    assert result.breakdown.sessions == Decimal("0.105")
    assert result.breakdown.tokens == Decimal("1.4")
    assert result.total == Decimal("1.655")  # 0.105 + 1.40 + 0.15


def test_compare_ranks_the_plans_and_names_the_cheapest() -> None:
    result = compare([SESSIONS, API, SUBSCRIPTION], HISTORY, TABLE, window=MARCH)
    assert [(r.name, r.total) for r in result.results] == [
        ("team", Decimal("1.15")),
        ("api", Decimal("1.55")),
        ("sessions", Decimal("1.655")),
    ]
    assert result.cheapest.name == "team"
    # ... but "team" dropped two runs; the cheapest plan that ran everything is "api"
    assert result.cheapest_complete is not None and result.cheapest_complete.name == "api"


def test_plans_from_files_compare_like_the_cli(tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text(
        'name = "team"\nkind = "subscription"\nmonthly_fee = 1\nmax_runs_per_day = 3\n'
        "max_runs_per_hour = 1\ncompute_usd_per_hour = 0.10\n"
    )
    (tmp_path / "sessions.json").write_text(
        json.dumps(
            {
                "name": "sessions",
                "kind": "session",
                "session_usd_per_hour": 0.36,
                "min_session_seconds": 60,
                "compute_usd_per_hour": 0.1,
            }
        )
    )
    plans = load_plans(tmp_path / "team.toml") + load_plans(tmp_path / "sessions.json")
    assert plans == [SUBSCRIPTION, SESSIONS]
    result = compare(plans, HISTORY, TABLE, window=MARCH)
    assert [r.total for r in result.results] == [Decimal("1.15"), Decimal("1.655")]


def test_a_file_may_hold_several_plans(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text(
        '[[plans]]\nname = "api"\nkind = "api"\n\n'
        '[[plans]]\nname = "sessions"\nkind = "session"\nsession_usd_per_hour = 0.36\n'
    )
    assert [p.name for p in load_plans(path)] == ["api", "sessions"]


def test_the_fee_and_allowances_are_prorated_to_the_window() -> None:
    # 17 March .. 16 April: 15 of March's 31 days and 15 of April's 30
    window = (datetime(2026, 3, 17, tzinfo=UTC), datetime(2026, 4, 16, tzinfo=UTC))
    assert month_shares(*window) == {
        "2026-03": Decimal(15) / Decimal(31),
        "2026-04": Decimal("0.5"),
    }
    plan = SubscriptionPlan(name="p", monthly_fee=Decimal(62), included_runs=4)
    runs = [agent(f"r{i}", datetime(2026, 4, 1 + i, tzinfo=UTC), 60) for i in range(3)]
    result = evaluate(plan, runs, TABLE, window=window)
    # fee: 62 * 15/31 = 30 for March, 62 * 0.5 = 31 for April
    assert result.monthly["2026-04"] == 31 and result.breakdown.fees.quantize(Decimal("0.01")) == 61
    # April's allowance is 4 * 0.5 = 2 runs: the third is dropped
    assert [d.run_id for d in result.dropped] == ["r2"]


def test_the_default_window_is_the_days_with_runs() -> None:
    result = evaluate(SUBSCRIPTION, HISTORY, TABLE)
    # 2 and 3 March: 2 of March's 31 days of the fee
    assert result.breakdown.fees == Decimal(2) / Decimal(31)


def test_runs_outside_the_window_are_an_error() -> None:
    with pytest.raises(ConfigError, match="run a1 started at 2026-03-02T09:00:00\\+00:00, outside"):
        evaluate(API, HISTORY, TABLE, window=(at(3, 0), at(4, 0)))


def test_an_unpriced_model_in_the_history_is_an_error() -> None:
    unknown = RunCost(
        "x1",
        "triage",
        "agent",
        at(2, 9),
        usage={"openai-compatible:llama3": Usage(input_tokens=10)},
    )
    with pytest.raises(UnknownPrice, match="no price for model 'openai-compatible:llama3'"):
        compare([API], [*HISTORY, unknown], TABLE)


def test_plan_names_must_differ() -> None:
    with pytest.raises(ConfigError, match="two plans are named 'api'"):
        compare([API, ApiPlan(name="api")], HISTORY, TABLE)


# -- forecast ------------------------------------------------------------------------------


def daily_cost_runs(costs: list[int]) -> list[RunCost]:
    """One run a day from 1 March costing `costs[i]` dollars ($1 per million input tokens)."""
    return [
        RunCost(
            f"d{i}",
            "digest",
            "agent",
            datetime(2026, 3, 1 + i, 8, tzinfo=UTC),
            usage={"scripted:bot": Usage(input_tokens=c * 1_000_000)},
        )
        for i, c in enumerate(costs)
    ]


def test_forecast_extends_a_linear_trend() -> None:
    result = forecast(daily_cost_runs([1 + 2 * x for x in range(10)]), TABLE, days=30)
    # y = 1 + 2x fits exactly; the next 30 days are x = 10..39:
    # sum(1 + 2x) = 30 + 2 * (10 + ... + 39) = 30 + 2 * 735 = 1500
    assert (result.intercept, result.slope, result.basis_days) == (1, 2, 10)
    assert result.total == 1500 and result.daily[0] == 21


def test_forecast_clamps_a_falling_trend_at_zero() -> None:
    result = forecast(daily_cost_runs([10, 9, 8]), TABLE, days=12)
    # y = 10 - x; x = 3..14 -> 7, 6, 5, 4, 3, 2, 1, 0, then negative -> 0: total 28
    assert result.total == 28 and result.daily[-1] == 0


def test_forecast_counts_days_without_runs_as_zero() -> None:
    runs = daily_cost_runs([2, 0, 2])
    result = forecast([runs[0], runs[2]], TABLE, days=30)
    # 2, 0, 2: flat at the mean 4/3 -> 30 * 4/3 = 40
    assert result.slope == 0 and result.total.quantize(Decimal("0.001")) == 40


def test_a_plan_forecast_adds_the_fee_to_the_trend() -> None:
    runs = daily_cost_runs([1] * 5)
    plan = SubscriptionPlan(name="p", monthly_fee=Decimal(30), max_runs_per_day=1)
    api = evaluate(ApiPlan(name="a"), runs, TABLE).forecast
    sub = evaluate(plan, runs, TABLE).forecast
    assert api.total == 30  # $1 a day for 30 days
    assert sub.total == 30  # nothing metered beyond the fee; the fee for 30 days is 30


# -- reports -------------------------------------------------------------------------------


def test_report_by_kind_answers_job_versus_agent_versus_hybrid() -> None:
    rows = report(HISTORY, TABLE, by="kind", compute_usd_per_hour=Decimal("0.10"))
    summary = {r.key: (r.runs, r.tokens_usd, r.compute_usd, r.total_usd) for r in rows}
    assert summary == {
        "agent": (6, Decimal("1.2"), 0, Decimal("1.2")),  # 6 * 0.20
        "hybrid": (1, Decimal("0.2"), Decimal("0.05"), Decimal("0.25")),  # 0.5 h * 0.10
        "job": (1, 0, Decimal("0.1"), Decimal("0.1")),  # 1 h * 0.10
    }
    assert [r.key for r in rows] == ["agent", "hybrid", "job"]  # most expensive first
    assert rows[0].usage == Usage(input_tokens=600_000, output_tokens=300_000, requests=6)


def test_report_by_principal_day_agent_and_workflow() -> None:
    by_principal = {r.key: r.runs for r in report(HISTORY, TABLE, by="principal")}
    assert by_principal == {"svc-support": 6, "svc-billing": 2}
    by_day = report(HISTORY, TABLE, by="day")
    assert [(r.key, r.runs, r.tokens_usd) for r in by_day] == [
        ("2026-03-02", 5, Decimal("0.8")),
        ("2026-03-03", 3, Decimal("0.6")),
    ]
    assert {r.key: r.runs for r in report(HISTORY, TABLE, by="agent")} == {
        "triage": 6,
        "reviewer": 1,
        "(none)": 1,
    }
    assert {r.key: r.session_seconds for r in report(HISTORY, TABLE)} == {
        "triage": 905,
        "bill": 60,
        "sweep": 0,  # 120+30+600+45+90+20
    }


def test_report_refuses_an_unknown_grouping() -> None:
    with pytest.raises(ConfigError, match="cannot group a cost report by 'model'"):
        report(HISTORY, TABLE, by="model")  # type: ignore[arg-type]


# -- bad plan files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        ({"name": "team", "kind": "subscription"}, "field 'monthly_fee' is required"),
        (
            {"name": "team", "kind": "subscription", "monthly_fee": -20},
            "field 'monthly_fee' must be >= 0, got -20",
        ),
        (
            {"name": "s", "kind": "session", "session_usd_per_hour": 1, "min_seconds": 60},
            "unknown field 'min_seconds' (see docs/cost.md for the fields)",
        ),
        (
            {"name": "flat", "kind": "flatrate"},
            "field 'kind': unknown plan kind 'flatrate'; one of 'api', 'subscription', 'session'",
        ),
        ({"name": "x"}, "field 'kind' is required: one of 'api', 'subscription', 'session'"),
        (
            {"name": "t", "kind": "subscription", "monthly_fee": 5, "max_runs_per_day": 0},
            "field 'max_runs_per_day' must be >= 1, got 0",
        ),
        (
            {"name": "t", "kind": "subscription", "monthly_fee": 5, "overage_per_run": 1},
            "overage_per_run and overage_usd_per_mtok apply only with over_cap = 'overage'",
        ),
        (
            {"name": "t", "kind": "subscription", "monthly_fee": 5, "over_cap": "queue"},
            "field 'over_cap': Input should be 'drop' or 'overage' (got 'queue')",
        ),
        (
            {
                "name": "t",
                "kind": "subscription",
                "monthly_fee": 5,
                "included_tokens": 1,
                "included_usd": 1,
            },
            "give included_tokens or included_usd, not both",
        ),
        ({"kind": "api"}, "field 'name' is required"),
    ],
)
def test_bad_plans_name_the_file_and_field(plan: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        parse_plan(plan, "plans/team.toml")
    assert str(caught.value) == f"plans/team.toml: {problem}"


def test_bad_plan_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ConfigFileError, match=r"broken\.toml: not valid TOML"):
        load_plans(broken)
    with pytest.raises(ConfigFileError, match=r"missing\.toml: cannot read it"):
        load_plans(tmp_path / "missing.toml")
    listed = tmp_path / "plans.toml"
    listed.write_text('[[plans]]\nname = "a"\nkind = "api"\n\n[[plans]]\nkind = "session"\n')
    with pytest.raises(ConfigFileError) as caught:
        load_plans(listed)
    assert str(caught.value) == (
        f"{listed}: field 'plans[1].name' is required; "
        "field 'plans[1].session_usd_per_hour' is required"
    )


def test_run_records_are_checked() -> None:
    with pytest.raises(ConfigError, match="started_at must be timezone-aware"):
        RunCost("r", "n", "job", datetime(2026, 3, 1))
    with pytest.raises(ConfigError, match="compute_seconds must be >= 0, got -1"):
        RunCost("r", "n", "job", at(1, 0), compute_seconds=Decimal(-1))
    assert RunCost("r", "n", "job", at(1, 0), compute_seconds=1.5).compute_seconds == Decimal(  # type: ignore[arg-type]
        "1.5"
    )
