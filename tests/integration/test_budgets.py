"""Budgets on both databases: a run's own Budget(usd=...) stops it before the call that could
cross it; budgets shared per agent, workflow or principal per day or month are held in the
store, so concurrent runs on real workers never overspend them together; refusals are
audited; a crashed run's hold expires; bad budgets are refused where they are declared."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rota import Agent, App, Budget, FakeClock, RunState, tool
from rota.cost import Price
from rota.errors import ConfigError
from rota.storage.audit import BUDGET_EXCEEDED
from rota.storage.usage import BudgetCharge, Hold
from rota.testing import ScriptedModel, call, say

# $10 per million input tokens, $40 per million output: a call of 100 in + 50 out costs
# 100*10 + 50*40 = 3000 per 1e6 = $0.003.
PRICE = Price(input=10, output=40)
CALL_USD = Decimal("0.003")
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)
LONG = "Review the step results carefully. " * 12  # 420 characters: a prompt >= 140 tokens


@tool
def step(n: int) -> int:
    """Record step n."""
    return n


def stepper(name: str) -> ScriptedModel:
    """Calls of 100 input + 30 output tokens: at OUTPUT_HEAVY, $0.0031 each."""
    script = [call(step, n=n) for n in range(1, 6)] + [say("done")]
    return ScriptedModel(name, script=script, tokens=(100, 30))


# Output dominates, so a call's worst case (prompt estimate + max_tokens 30) is close to what
# it costs: the call refused is one that would really have crossed the budget.
OUTPUT_HEAVY = Price(input=1, output=100)


def _spent(app: App, run_ids: list[str]) -> Decimal:
    pusd = sum(c.cost_pusd for r in run_ids for c in app.store.model_calls(r))
    return Decimal(pusd) / Decimal(10**12)


# -- a run's own budget ----------------------------------------------------------------------


def test_a_run_with_budget_usd_stops_before_the_call_that_would_cross_it(app: App) -> None:
    model = stepper("penny")
    agent = Agent(
        "penny",
        model,
        "Go.",
        tools=[step],
        max_tokens=30,
        price=OUTPUT_HEAVY,
        budget=Budget(usd=0.01),
    )
    app.agent(agent)

    handle = app.run_now("penny", "go")
    app.drain()

    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.error is not None and run.error["type"] == "AgentFailed"
    # Calls 1-3 cost 3 x (100*1 + 30*100)/1e6 = $0.0093. A 4th would cost $0.0031 more
    # ($0.0124 > $0.01): it is not made, since its worst case (a prompt of about 300 tokens
    # at $1 + 30 at $100, about $0.0033) does not fit the $0.0007 left.
    assert model.calls == 3
    assert _spent(app, [handle.id]) == Decimal("0.0093")
    assert "budget_exceeded" in run.error["message"]
    assert "and $0.0007 of the budget's $0.01 is left" in run.error["message"]
    (refusal,) = app.store.audit_records(action=BUDGET_EXCEEDED, limit=10)
    assert (refusal.run_id, refusal.subject, refusal.detail["limit"]) == (handle.id, "penny", "run")
    assert refusal.detail["reason"].startswith("the next model call could cost $0.00")


def test_an_in_memory_run_stops_before_crossing_its_usd_budget() -> None:
    model = stepper("mem-penny")
    agent = Agent(
        "mem",
        model,
        "Go.",
        tools=[step],
        max_tokens=30,
        price=OUTPUT_HEAVY,
        budget=Budget(usd=0.01),
    )
    result = asyncio.run(agent.run("go"))
    assert (result.reason, model.calls, result.usage.requests) == ("budget_exceeded", 3, 3)


# -- shared budgets --------------------------------------------------------------------------


def test_20_concurrent_runs_sharing_a_daily_budget_never_spend_more_than_it(
    database_url: str,
) -> None:
    app = App(database_url, clock=FakeClock(NOON))  # one UTC day, whenever the test runs
    model = ScriptedModel("shared", script=[say("done")], tokens=(100, 50), latency=0.02)
    agent = Agent("shared", model, LONG, max_tokens=50, price=PRICE)
    app.agent(agent)
    limit = Decimal("0.02")  # room for 6 calls of $0.003, not 7
    app.budget(agent="shared", usd=0.02, per="day")
    try:
        handles = app.run_many("shared", [f"task {i}" for i in range(20)])
        # Two workers in two threads, ten runs at a time each: calls overlap.
        workers = [
            threading.Thread(
                target=lambda: asyncio.run(app.worker(concurrency=10).run(until_idle=True))
            )
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

        states = [h.get().state for h in handles]
        ok = [h.id for h in handles if h.get().state == RunState.SUCCEEDED]
        refused = [h for h in handles if h.get().state == RunState.FAILED]
        assert len(ok) + len(refused) == 20 and states.count(RunState.SUCCEEDED) == len(ok)
        spent = _spent(app, [h.id for h in handles])
        assert spent == len(ok) * CALL_USD
        assert spent <= limit
        assert 1 <= len(ok) <= 6 and refused
        assert all(
            "shared budget agent:shared" in (h.get().error or {})["message"] for h in refused
        )
        audited = app.store.audit_records(action=BUDGET_EXCEEDED, limit=100)
        assert sorted(r.run_id for r in audited) == sorted(h.id for h in refused)
        assert not app.store.conn().execute("SELECT * FROM rota_budget_holds")  # all released
    finally:
        app.close()


def test_a_monthly_principal_budget_counts_requests_across_runs(database_url: str) -> None:
    app = App(database_url, clock=FakeClock(NOON))
    app.principal("svc-ops", scopes=[])
    model = ScriptedModel("monthly", script=[say("ok")], tokens=(10, 5))
    app.agent(Agent("monthly", model, "Go.", price=PRICE, run_as="svc-ops"))
    app.budget(principal="svc-ops", requests=2, per="month")

    handles = [app.run_now("monthly", f"task {i}") for i in range(3)]
    app.drain(concurrency=1, prefetch=0)
    app.close()

    assert [h.get().state for h in handles] == [RunState.SUCCEEDED] * 2 + [RunState.FAILED]
    month = "2026-03"
    error = handles[2].get().error or {}
    assert error["message"].endswith(
        f"budget_exceeded: the shared budget principal:svc-ops allows 2 requests per month "
        f"({month}); 2 requests are spent and 0 requests held by calls in flight, and the "
        "next call could use 1 requests"
    )


def test_a_crashed_runs_hold_stops_counting_when_it_expires(store: Any) -> None:
    t = 1_780_000_000.0
    day = BudgetCharge(
        key="agent:a", scope="agent", value="a", period="2026-05-28", start=t - 10,
        end=t + 86_000, limit_pusd=10_000,
    )  # fmt: skip

    def hold(run_id: str, at: float) -> Hold:
        return Hold(run_id, "model#1", 6_000, 150, 1, created_at=at, expires_at=at + 900)

    assert store.reserve_budgets([day], hold("crashed", t), t) is None
    refusal = store.reserve_budgets([day], hold("next", t + 899), t + 899)
    assert refusal is not None
    assert (refusal.what, refusal.limit, refusal.spent, refusal.held, refusal.wanted) == (
        "usd",
        10_000,
        0,
        6_000,
        6_000,
    )
    # 900 s on, the crashed run's hold has expired: it no longer counts.
    assert store.reserve_budgets([day], hold("next", t + 900), t + 900) is None
    held = store.conn().execute("SELECT run_id FROM rota_budget_holds")
    assert [r["run_id"] for r in held] == ["next"]


def test_recording_a_call_replaces_its_hold_by_what_it_cost(store: Any) -> None:
    from rota.storage.usage import ModelCall

    t = 1_780_000_000.0
    day = BudgetCharge("agent:a", "agent", "a", "2026-05-28", t - 10, t + 86_000, 10_000)
    assert store.reserve_budgets([day], Hold("r1", "model#1", 6_000, 0, 1, t, t + 900), t) is None
    store.record_model_call(
        ModelCall("r1", "model#1", t, "a", "a", None, "manual", "scripted", "scripted:a",
                  1, 1, 0, 0, 0, 1, 2_500, "{}")
    )  # fmt: skip
    assert store.budget_used(day) == (2_500, 2, 1)
    # 2,500 spent + 6,000 wanted fits 10,000 now that the hold of 6,000 is gone.
    assert store.reserve_budgets([day], Hold("r2", "model#1", 6_000, 0, 1, t, t + 900), t) is None
    refusal = store.reserve_budgets([day], Hold("r3", "model#1", 6_000, 0, 1, t, t + 900), t)
    assert refusal is not None and (refusal.spent, refusal.held) == (2_500, 6_000)


# -- bad budgets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"usd": 0},
            "Budget(usd=0) must be a number > 0 (USD): a limit of zero or less would refuse "
            "every model call; leave usd out for no limit",
        ),
        (
            {"tokens": -5},
            "Budget(tokens=-5) must be a whole number > 0: a limit of zero or less would "
            "refuse every model call; leave tokens out for no limit",
        ),
        (
            {"requests": 1.5},
            "Budget(requests=1.5) must be a whole number > 0: a limit of zero or less would "
            "refuse every model call; leave requests out for no limit",
        ),
        (
            {},
            "a Budget needs a limit: Budget(usd=0.05), Budget(tokens=20_000) or "
            "Budget(requests=10)",
        ),
    ],
)
def test_a_budget_of_zero_or_less_is_refused_with_a_clear_error(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Budget(**kwargs)
    assert str(caught.value) == message


def test_bad_shared_budgets_and_unpriced_usd_budgets_are_refused_where_declared() -> None:
    app = App("sqlite:///:memory:")
    with pytest.raises(ConfigError, match=r"^Budget\(usd=-1\) must be a number > 0"):
        app.budget(agent="a", usd=-1)
    with pytest.raises(ConfigError, match="exactly one agent, workflow or principal"):
        app.budget(agent="a", principal="p", usd=1)
    with pytest.raises(ConfigError, match=r"per=\.\.\.\) must be 'day' or 'month', got 'week'"):
        app.budget(agent="a", usd=1, per="week")
    app.budget(agent="a", usd=1)
    with pytest.raises(ConfigError, match="a budget for agent:a per day is declared twice"):
        app.budget(agent="a", tokens=10)
    with pytest.raises(ConfigError) as caught:
        Agent("sim", ScriptedModel("sim", script=[say("x")]), "Go.", budget=Budget(usd=1))
    assert str(caught.value) == (
        "sim: Budget(usd=...) needs a price for the simulated model 'scripted:sim': pass "
        "price=Price(input=..., output=...) or add an override with simulates = "
        "'anthropic:...' to $ROTA_PRICES"
    )
