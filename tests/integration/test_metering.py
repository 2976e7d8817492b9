"""Metering on both databases: every model call's usage and cost is stored once, exactly as
the provider reported it (the fake servers speak the real wire formats, driven by the real
SDKs), sessions and tool calls are recorded per agent run, and the history loader turns it
all into the RunCost records that reports and plan comparisons read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pinned_prices import VERSION as PINNED_VERSION
from rota import Agent, App, FakeClock, RunState, tool
from rota.agents.models.registry import resolve_model
from rota.agents.types import ModelRequest, Usage
from rota.cost import Price
from rota.cost.history import load_history
from rota.cost.pricing import SIMULATED_SOURCE, price_from_json
from rota.errors import ConfigError, UnknownPrice
from rota.storage.usage import ModelCall
from rota.testing import FakeAnthropicServer, FakeOpenAIServer, ScriptedModel, call, say

KEY = "sk-test"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@tool
def lookup(customer: str) -> str:
    """Look up a customer."""
    return f"{customer}: gold plan"


@pytest.fixture
def anthropic_srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def openai_srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _sum(calls: list[ModelCall]) -> Usage:
    return sum(
        (
            Usage(
                c.input_tokens,
                c.output_tokens,
                c.cache_write_tokens,
                c.cache_read_tokens,
                c.reasoning_tokens,
                c.requests,
            )
            for c in calls
        ),
        Usage(requests=0),
    )


# -- usage as the providers reported it ------------------------------------------------------


def test_stored_tokens_are_the_anthropic_usage_fields_summed_exactly(
    app: App, anthropic_srv: FakeAnthropicServer
) -> None:
    wire = [
        {
            "input_tokens": 1200,
            "output_tokens": 40,
            "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 0,
        },
        {
            "input_tokens": 90,
            "output_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4200,
        },
        {
            "input_tokens": 7,
            "output_tokens": 11,
            "cache_creation_input_tokens": 130,
            "cache_read_input_tokens": 4200,
        },
    ]
    anthropic_srv.reply_tool_call("lookup", {"customer": "acme"}, usage=wire[0])
    anthropic_srv.reply_tool_call("lookup", {"customer": "globex"}, usage=wire[1])
    anthropic_srv.reply_text("both are gold", usage=wire[2])
    model = resolve_model(
        "anthropic:claude-haiku-4-5", base_url=anthropic_srv.base_url, api_key=KEY
    )
    app.agent(Agent("checker", model, "Check customers.", tools=[lookup]), run_as=None)

    handle = app.run_now("checker", "check acme and globex")
    app.drain()

    assert handle.get().state == RunState.SUCCEEDED
    calls = app.store.model_calls(handle.id)
    assert [c.step_key for c in calls] == ["model#1", "model#2", "model#3"]
    assert _sum(calls) == Usage(
        input_tokens=1200 + 90 + 7,
        output_tokens=40 + 25 + 11,
        cache_write_tokens=3000 + 0 + 130,
        cache_read_tokens=0 + 4200 + 4200,
        reasoning_tokens=0,
        requests=3,
    )
    # claude-haiku-4-5 list price: $1 input, $5 output, $1.25 cache write, $0.10 cache read
    # 1297*1 + 76*5 + 3130*1.25 + 8400*0.1 = 1297 + 380 + 3912.5 + 840 = 6429.5 per 1e6
    assert sum(c.cost_pusd for c in calls) == 6_429_500_000  # picodollars: 0.0064295 USD
    assert {c.model for c in calls} == {"anthropic:claude-haiku-4-5"}
    assert {(c.provider, c.agent, c.name, c.trigger) for c in calls} == {
        ("anthropic", "checker", "checker", "manual")
    }
    price = price_from_json(calls[0].price)
    assert price.source.startswith("genai-prices ")
    assert (price.input, price.output) == (Decimal(1), Decimal(5))


def test_stored_tokens_are_the_openai_usage_fields_normalised_and_summed(
    app: App, openai_srv: FakeOpenAIServer
) -> None:
    openai_srv.reply_tool_call(
        "lookup",
        {"customer": "acme"},
        usage={
            "prompt_tokens": 1500,
            "completion_tokens": 80,
            "total_tokens": 1580,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    )
    openai_srv.reply_text(
        "gold",
        usage={
            "prompt_tokens": 1700,
            "completion_tokens": 12,
            "total_tokens": 1712,
            "prompt_tokens_details": {"cached_tokens": 1536},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    model = resolve_model("openai:gpt-4o", base_url=openai_srv.base_url, api_key=KEY)
    app.agent(Agent("o-checker", model, "Check.", tools=[lookup]))

    handle = app.run_now("o-checker", "check acme")
    app.drain()

    assert handle.get().state == RunState.SUCCEEDED
    # OpenAI counts cached tokens inside prompt_tokens: rota stores the uncached part.
    assert _sum(app.store.model_calls(handle.id)) == Usage(
        input_tokens=(1500 - 1000) + (1700 - 1536),
        output_tokens=80 + 12,
        cache_write_tokens=0,
        cache_read_tokens=1000 + 1536,
        reasoning_tokens=30,
        requests=2,
    )
    # gpt-4o: $2.50 input, $10 output, $1.25 cached: 664*2.5 + 92*10 + 2536*1.25 = 5750
    calls = app.store.model_calls(handle.id)
    assert sum(c.cost_pusd for c in calls) == 5_750_000_000  # picodollars: 0.00575 USD


# -- once per call ---------------------------------------------------------------------------


def _call(step_key: str, tokens: int, cost_pusd: int, **changes: Any) -> ModelCall:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "step_key": step_key,
        "at": T0.timestamp(),
        "name": "triage",
        "agent": "triage",
        "principal": "svc-ops",
        "trigger": "event",
        "provider": "anthropic",
        "model": "anthropic:claude-sonnet-4-5",
        "input_tokens": tokens,
        "output_tokens": 10,
        "cache_write_tokens": 0,
        "cache_read_tokens": 0,
        "reasoning_tokens": 0,
        "requests": 1,
        "cost_pusd": cost_pusd,
        "price": "{}",
    }
    return ModelCall(**{**fields, **changes})


def test_a_step_recorded_again_replaces_its_row_instead_of_adding_one(store: Any) -> None:
    store.record_model_call(_call("model#1", 100, 450))
    store.record_model_call(_call("model#2", 200, 750))
    store.record_model_call(_call("model#1", 120, 510))  # the step ran again after a crash

    calls = store.model_calls("run-1")
    assert [(c.step_key, c.input_tokens, c.cost_pusd) for c in calls] == [
        ("model#1", 120, 510),
        ("model#2", 200, 750),
    ]
    since, until = T0.timestamp() - 1, T0.timestamp() + 1
    (total,) = store.usage_totals("agent", since, until)
    assert (total.key, total.runs, total.calls, total.input_tokens, total.cost_pusd) == (
        "triage",
        1,
        2,
        320,
        1260,
    )


def test_a_resumed_run_does_not_record_its_replayed_calls_again(app: App) -> None:
    crashes = {"left": 1}

    def reply(request: ModelRequest, turn: int) -> Any:
        if turn == 2 and crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the process running this call died")
        return call(lookup, customer="acme") if turn == 1 else say("gold")

    model = ScriptedModel("resumer", fn=reply, tokens=(100, 10))
    agent = Agent("resumer", model, "Check.", tools=[lookup], price=Price(input=1, output=2))
    app.agent(agent, retries=1, retry_backoff=0)

    handle = app.run_now("resumer", "go")
    app.drain()

    run = handle.get()
    assert (run.state, run.attempt) == (RunState.SUCCEEDED, 2)
    assert model.calls == 3  # turn 1, turn 2 (died), turn 2 again: model#1 was replayed
    calls = app.store.model_calls(handle.id)
    assert [(c.step_key, c.input_tokens, c.cost_pusd) for c in calls] == [
        ("model#1", 100, 120_000_000),  # 100*1 + 10*2 = 120 per 1e6: 0.00012 USD
        ("model#2", 100, 120_000_000),
    ]


# -- usage totals ----------------------------------------------------------------------------


def test_usage_totals_group_by_workflow_agent_principal_trigger_and_day(store: Any) -> None:
    day2 = (T0 + timedelta(days=1)).timestamp()
    store.record_model_call(_call("model#1", 100, 1000))
    store.record_model_call(_call("model#1", 50, 300, run_id="run-2", principal=None))
    store.record_model_call(
        _call("agent:vet/model#1", 10, 5, run_id="run-3", name="nightly", agent="vet", at=day2)
    )
    since, until = T0.timestamp(), (T0 + timedelta(days=2)).timestamp()

    def totals(by: str) -> list[tuple[str, int, int, int]]:
        return [
            (t.key, t.runs, t.input_tokens, t.cost_pusd)
            for t in store.usage_totals(by, since, until)
        ]

    assert totals("workflow") == [("triage", 2, 150, 1300), ("nightly", 1, 10, 5)]
    assert totals("agent") == [("triage", 2, 150, 1300), ("vet", 1, 10, 5)]
    assert totals("principal") == [("svc-ops", 2, 110, 1005), ("(none)", 1, 50, 300)]
    assert totals("trigger") == [("event", 3, 160, 1305)]
    assert totals("day") == [("2026-03-02", 2, 150, 1300), ("2026-03-03", 1, 10, 5)]
    assert store.usage_totals("agent", since, T0.timestamp() + 1)[0].calls == 2  # window


# -- sessions, compute, and the history ------------------------------------------------------


def test_history_has_tokens_sessions_tool_calls_and_compute_per_run(database_url: str) -> None:
    clock = FakeClock(T0)
    app = App(database_url, clock=clock)

    def slow_reply(request: ModelRequest, turn: int) -> Any:
        clock.advance(30)  # each model call takes 30 s of (fake) time
        return call(lookup, customer="acme") if turn == 1 else say("gold")

    model = ScriptedModel("timed", fn=slow_reply, tokens=(1000, 100))
    app.agent(Agent("timed", model, "Check.", tools=[lookup], price=Price(input=3, output=15)))

    @app.job
    def crunch(ctx: Any) -> None:
        clock.advance(120)

    @app.workflow
    async def hybrid(ctx: Any) -> None:
        clock.advance(60)
        await ctx.agent(Agent("inner", model, "Check.", tools=[lookup], price=Price(3, 15)))

    try:
        runs = [app.run_now(name) for name in ("timed", "crunch", "hybrid")]
        # One at a time: the fake clock is shared, and a claimed run's start is its claim.
        app.drain(lease_s=10_000, concurrency=1, prefetch=0)
        assert [r.get().state for r in runs] == [RunState.SUCCEEDED] * 3
        history = load_history(app.store, T0, T0 + timedelta(days=1))
    finally:
        app.close()

    by_id = {r.run_id: r for r in history.records}
    agent, job, mixed = (by_id[r.id] for r in runs)
    assert (agent.kind, agent.agent, agent.session_seconds, agent.tool_calls) == (
        "agent",
        "timed",
        Decimal(60),
        1,
    )
    assert agent.usage == {"scripted:timed": Usage(2000, 200, requests=2)}
    assert agent.compute_seconds == 0  # the agent's time is session, not job compute
    assert (job.kind, job.usage, job.session_seconds, job.compute_seconds) == (
        "job",
        {},
        Decimal(0),
        Decimal(120),
    )
    assert (mixed.kind, mixed.agent, mixed.session_seconds, mixed.compute_seconds) == (
        "hybrid",
        "inner",
        Decimal(60),
        Decimal(60),
    )
    # The scripted model was priced with price=: the history is priced as it was recorded.
    assert history.table.cost("scripted:timed", Usage(1000, 100), T0) == Decimal("0.0045")


def test_a_job_and_the_agent_it_escalated_to_are_one_hybrid_record(database_url: str) -> None:
    clock = FakeClock(T0)
    app = App(database_url, clock=clock)

    def reply(request: ModelRequest, turn: int) -> Any:
        clock.advance(45)
        return say("refund approved")

    reviewer = Agent(
        "refunder",
        ScriptedModel("refunder", fn=reply, tokens=(800, 40)),
        "Decide.",
        price=Price(3, 15),
    )
    app.agent(reviewer)

    @app.job(escalate_to=reviewer)
    def bill(ctx: Any, event: dict[str, Any]) -> Any:
        clock.advance(20)
        if event["type"] != "known":
            return ctx.escalate(event, reason="unknown event type")
        return "billed"

    try:
        known = app.run_now("bill", {"type": "known"})
        odd = app.run_now("bill", {"type": "odd"})
        app.drain(lease_s=10_000, concurrency=1, prefetch=0)
        child = odd.result()["run_id"]
        assert app.get_run(child).state == RunState.SUCCEEDED
        history = load_history(app.store, T0, T0 + timedelta(days=1))
    finally:
        app.close()

    by_id = {r.run_id: r for r in history.records}
    assert set(by_id) == {known.id, odd.id}  # the agent run is folded into its job's
    plain, hybrid = by_id[known.id], by_id[odd.id]
    assert (plain.kind, plain.compute_seconds, plain.usage) == ("job", Decimal(20), {})
    assert (hybrid.kind, hybrid.agent, hybrid.compute_seconds, hybrid.session_seconds) == (
        "hybrid",
        "refunder",
        Decimal(20),
        Decimal(45),
    )
    assert hybrid.usage == {"scripted:refunder": Usage(800, 40)}


def test_a_scripted_model_without_a_price_is_recorded_as_a_labelled_simulated_zero(
    app: App,
) -> None:
    app.agent(Agent("free", ScriptedModel("free", script=[say("ok")]), "Go."))
    handle = app.run_now("free", "go")
    app.drain()

    (recorded,) = app.store.model_calls(handle.id)
    assert (recorded.simulated, recorded.cost_pusd) == (True, 0)
    assert price_from_json(recorded.price).source == SIMULATED_SOURCE


def test_model_calls_count_prometheus_tokens_and_cost(app: App) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    labels = {"provider": "scripted", "model": "metered"}
    before_in = sample("rota_model_tokens_total", **labels, type="input")
    before_usd = sample("rota_model_cost_usd_total", **labels)
    model = ScriptedModel("metered", script=[say("ok")], tokens=(2000, 500))
    app.agent(Agent("metered", model, "Go.", price=Price(input=5, output=20)))
    app.run_now("metered", "go")
    app.drain()

    assert sample("rota_model_tokens_total", **labels, type="input") - before_in == 2000
    assert sample("rota_model_tokens_total", **labels, type="output") >= 500
    # 2000*5 + 500*20 = 20000 per 1e6
    assert sample("rota_model_cost_usd_total", **labels) - before_usd == pytest.approx(0.02)


# -- prices at definition time ---------------------------------------------------------------


def test_an_agent_whose_model_has_no_price_is_refused_where_it_is_defined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ROTA_PRICES", raising=False)
    with pytest.raises(UnknownPrice) as caught:
        Agent("x", "anthropic:claude-test", "Go.")
    assert str(caught.value) == (
        f"no price for model 'anthropic:claude-test': genai-prices {PINNED_VERSION} (bundled "
        "data) has no token price for it; pass price=Price(input=..., output=...) "
        "(USD per million tokens), "
        "or add an override: [[prices]] model = 'anthropic:claude-test' input = ... output = "
        "... (0 and 0 for a free local model)"
    )
    priced = Agent("x", "anthropic:claude-test", "Go.", price=Price(input=1, output=5))
    assert priced.defined_price == Price(input=1, output=5)
    with pytest.raises(ConfigError, match=r"^x: price must be a rota.cost.Price"):
        Agent("x", "anthropic:claude-test", "Go.", price=3)  # type: ignore[arg-type]


def test_price_overrides_come_from_the_file_named_by_rota_prices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[[prices]]\nmodel = "anthropic:claude-test"\ninput = 2\noutput = 8\n')
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ROTA_PRICES", str(prices))
    agent = Agent("y", "anthropic:claude-test", "Go.")
    assert (agent.defined_price.input, agent.defined_price.output) == (Decimal(2), Decimal(8))

    prices.write_text('[[prices]]\nmodel = "anthropic:claude-test"\ninput = -2\noutput = 8\n')
    with pytest.raises(ConfigError, match=r"field 'prices\[0\].input' must be >= 0, got -2"):
        Agent("y", "anthropic:claude-test", "Go.")


def test_an_in_memory_run_is_metered_against_its_own_budget_only() -> None:
    model = ScriptedModel("mem", script=[say("ok")], tokens=(10, 5))
    result = asyncio.run(Agent("mem", model, "Go.", price=Price(1, 1)).run("go"))
    assert (result.reason, result.usage.input_tokens) == ("succeeded", 10)
