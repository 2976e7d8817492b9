"""Budgets hold against the worst case a provider can report: the fake servers (driven by the
real SDKs) count each request's prompt as the most tokens docs/cost.md's bound allows, and
every reply as max_tokens of output. A shared daily budget worked by two workers, and a
run's own Budget(usd=) / Budget(tokens=), are then never exceeded, by a single picodollar or
token, on SQLite and PostgreSQL.

The bound is computed here on its own, from the request the fake received, as the docs state
it: the UTF-8 size of the request (system, messages, tools, output schema) as compact JSON,
plus 4 tokens of framing per message, tool call, tool result, system prompt and reply, plus
600 tokens when tools or an output schema are sent."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rota import Agent, App, Budget, FakeClock, RunState, tool
from rota.agents.models.registry import resolve_model
from rota.agents.types import (
    Message,
    ModelRequest,
    ToolCall,
    ToolResult,
    ToolSpec,
    prompt_bound,
    to_json,
)
from rota.cost import Price
from rota.cost.pricing import to_pusd
from rota.testing import FakeAnthropicServer, FakeOpenAIServer, FakeReply

KEY = "sk-test"
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)
PRICE = Price(input=10, output=10)  # $10 per million tokens, prompt and output alike
MAX_TOKENS = 100
# Multi-byte text: 3 characters a token (the old estimate) is far below what a provider may
# count for it.
INSTRUCTIONS = "Prüfe die Rechnung: Beträge in €, Fristen, Skonto; größte Sorgfalt. " * 30
FRAMING, TOOLS_PROMPT = 4, 600


def documented_bound(request: ModelRequest) -> int:
    """The most prompt tokens docs/cost.md says a provider can count for `request`."""
    payload = [request.system, to_json(request.messages), to_json(request.tools)]
    text = json.dumps([*payload, request.output_schema], ensure_ascii=False, separators=(",", ":"))
    messages = request.messages
    parts = 2 + len(messages) + sum(len(m.tool_calls) + len(m.tool_results) for m in messages)
    extra = TOOLS_PROMPT if request.tools or request.output_schema is not None else 0
    return len(text.encode("utf-8")) + FRAMING * parts + extra


# -- the request rota sent, read back from the wire --------------------------------------------


def from_anthropic(body: dict[str, Any]) -> ModelRequest:
    messages = []
    for m in body["messages"]:
        blocks = m["content"]
        if isinstance(blocks, str):
            messages.append(Message(m["role"], blocks))
            continue
        messages.append(
            Message(
                m["role"],
                "".join(b["text"] for b in blocks if b["type"] == "text"),
                tuple(
                    ToolCall(b["id"], b["name"], b["input"])
                    for b in blocks
                    if b["type"] == "tool_use"
                ),
                tuple(
                    ToolResult(b["tool_use_id"], b["content"], b.get("is_error", False))
                    for b in blocks
                    if b["type"] == "tool_result"
                ),
            )
        )
    return ModelRequest(
        model=body["model"],
        system="".join(b["text"] for b in body.get("system", [])),
        messages=tuple(messages),
        tools=tuple(
            ToolSpec(t["name"], t["description"], t["input_schema"]) for t in body.get("tools", [])
        ),
        max_tokens=body["max_tokens"],
    )


def from_openai_chat(body: dict[str, Any]) -> ModelRequest:
    """A tool-free Chat Completions request: the system message, then user/assistant text."""
    wire = body["messages"]
    system = wire[0]["content"] if wire and wire[0]["role"] == "system" else ""
    turns = wire[1:] if system else wire
    return ModelRequest(
        model=body["model"],
        system=system,
        messages=tuple(Message(m["role"], m["content"]) for m in turns),
        max_tokens=body["max_completion_tokens"],
    )


def anthropic_worst_case(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "input_tokens": documented_bound(from_anthropic(body)),
        "output_tokens": body["max_tokens"],
    }


def openai_worst_case(body: dict[str, Any]) -> dict[str, Any]:
    prompt = documented_bound(from_openai_chat(body))
    output = body["max_completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}


Provider = tuple[str, Callable[..., Any], Callable[[dict[str, Any]], dict[str, Any]]]
PROVIDERS: dict[str, Provider] = {
    "anthropic": ("anthropic:claude-test", FakeAnthropicServer, anthropic_worst_case),
    "openai": ("openai:gpt-test", FakeOpenAIServer, openai_worst_case),
}


@pytest.fixture(params=sorted(PROVIDERS))
def worst_case(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """(model spec, a running fake server that reports the worst case for every request)."""
    spec, server, usage = PROVIDERS[request.param]
    with server(usage=usage) as srv:
        srv.handler = lambda body: FakeReply(text="done")
        yield spec, srv


def _spent_pusd(app: App, run_ids: list[str]) -> int:
    return sum(c.cost_pusd for r in run_ids for c in app.store.model_calls(r))


# -- shared budgets --------------------------------------------------------------------------


def test_two_workers_never_spend_more_than_a_shared_budget_on_worst_case_usage(
    database_url: str, worst_case: tuple[str, Any]
) -> None:
    spec, srv = worst_case
    app = App(database_url, clock=FakeClock(NOON))  # one UTC day, whenever the test runs
    model = resolve_model(spec, base_url=srv.base_url, api_key=KEY)
    app.agent(Agent("biller", model, INSTRUCTIONS, max_tokens=MAX_TOKENS, price=PRICE))
    limit = Decimal("0.10")
    app.budget(agent="biller", usd=limit, per="day")
    try:
        handles = app.run_many("biller", [f"invoice {i}" for i in range(12)])
        workers = [
            threading.Thread(
                target=lambda: asyncio.run(app.worker(concurrency=4).run(until_idle=True))
            )
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

        runs = [h.get() for h in handles]
        ok = [r.id for r in runs if r.state == RunState.SUCCEEDED]
        refused = [r for r in runs if r.state == RunState.FAILED]
        assert len(ok) + len(refused) == 12
        assert ok and refused  # the budget was reached
        assert all("shared budget agent:biller" in (r.error or {})["message"] for r in refused)
        # Every call was billed the worst case: the whole bound and max_tokens.
        calls = [c for r in ok for c in app.store.model_calls(r)]
        assert len(calls) == len(ok)
        assert {c.output_tokens for c in calls} == {MAX_TOKENS}
        # (more tokens than the instructions have characters: far past 3 characters a token)
        assert all(c.input_tokens > len(INSTRUCTIONS) for c in calls)
        # ... and still the budget holds, to the picodollar.
        assert _spent_pusd(app, ok) <= to_pusd(limit)
        assert not app.store.conn().execute("SELECT * FROM rota_budget_holds")
    finally:
        app.close()


# -- a run's own budget ----------------------------------------------------------------------


@tool
def lookup(invoice: str) -> str:
    """Look up an invoice."""
    return f"{invoice}: " + "Position 12,50 € geprüft, Skonto 2 % bis 10.03.; " * 25


@pytest.fixture
def anthropic_worst() -> Iterator[FakeAnthropicServer]:
    """Anthropic counting the worst case; answers with lookups, then a final text."""
    with FakeAnthropicServer(usage=anthropic_worst_case) as srv:

        def reply(body: dict[str, Any]) -> FakeReply:
            turn = len(body["messages"]) // 2 + 1
            if turn <= 6:
                return FakeReply.tool_call("lookup", {"invoice": f"RE-{turn:04d}"})
            return FakeReply(text="all checked")

        srv.handler = reply
        yield srv


@pytest.mark.parametrize(
    ("budget", "used"),
    [
        (Budget(usd=Decimal("0.14")), lambda calls: sum(c.cost_pusd for c in calls)),
        (
            Budget(tokens=14_000),
            lambda calls: sum(c.input_tokens + c.output_tokens for c in calls),
        ),
    ],
    ids=["usd", "tokens"],
)
def test_a_runs_own_budget_is_never_exceeded_on_worst_case_usage(
    app: App, anthropic_worst: FakeAnthropicServer, budget: Budget, used: Any
) -> None:
    model = resolve_model("anthropic:claude-test", base_url=anthropic_worst.base_url, api_key=KEY)
    agent = Agent(
        "checker",
        model,
        INSTRUCTIONS,
        tools=[lookup],
        max_tokens=MAX_TOKENS,
        price=PRICE,
        budget=budget,
    )
    app.agent(agent)

    handle = app.run_now("checker", "check the March invoices")
    app.drain()

    run = handle.get()
    calls = app.store.model_calls(handle.id)
    assert run.state == RunState.FAILED and "budget_exceeded" in run.error["message"]
    assert len(calls) >= 2  # it made calls, then stopped short of the one that could cross
    limit = to_pusd(Decimal(budget.usd)) if budget.usd is not None else budget.tokens
    assert used(calls) <= limit


# -- the bound rota reserves is the documented one ---------------------------------------------


def test_rota_reserves_exactly_the_documented_bound(
    anthropic_worst: FakeAnthropicServer,
) -> None:
    model = resolve_model("anthropic:claude-test", base_url=anthropic_worst.base_url, api_key=KEY)
    agent = Agent("mem", model, INSTRUCTIONS, tools=[lookup], max_tokens=MAX_TOKENS, price=PRICE)
    result = asyncio.run(agent.run("check the March invoices"))
    assert result.ok and len(anthropic_worst.requests) == 7
    for body in anthropic_worst.requests:
        request = from_anthropic(body)
        assert prompt_bound(request, "anthropic") == documented_bound(request)
