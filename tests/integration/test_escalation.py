"""Escalation from jobs to agents, shadow mode and the decision cache, on both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from rota import Agent, App, tool
from rota.agents.types import ModelRequest
from rota.cli import app as cli
from rota.clock import FakeClock
from rota.errors import ConfigError, RunFailed
from rota.model import RunState
from rota.shadow import compare
from rota.testing import ScriptedModel, answer, call

KNOWN = {"subscription_upgraded": 1500, "subscription_cancelled": 0}


def task_of(request: ModelRequest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(request.messages[0].text)
    return data


def billing_app(app: App, *, shadow: float = 0.0, agent_says: Any = None) -> dict[str, Any]:
    """A job that bills known events itself and escalates the rest to an agent."""
    seen: dict[str, Any] = {"billed": [], "agent_tasks": [], "created": []}

    @tool
    def create_billing_event(customer: str, amount_cents: int) -> str:
        """Create a billing event (changes the ledger: not read-only)."""
        seen["created"].append((customer, amount_cents))
        return "created"

    @tool(read_only=True)
    def query_subscription(customer: str) -> dict[str, Any]:
        """Read a subscription."""
        return {"customer": customer, "plan": "pro"}

    def decide(request: ModelRequest, turn: int) -> Any:
        task = task_of(request)
        seen["agent_tasks"].append(task)
        item = task["item"]
        if turn == 1:
            return call(query_subscription, customer=item["customer"])
        if turn == 2:
            return call(create_billing_event, customer=item["customer"], amount_cents=99)
        if agent_says is not None:
            return answer(agent_says(item))
        return answer({"customer": item["customer"], "amount_cents": 99})

    reviewer = Agent(
        "billing-reviewer",
        ScriptedModel("reviewer", fn=decide),
        "Decide the billing event.",
        tools=[create_billing_event, query_subscription],
        output=dict[str, Any],
    )

    @app.job(escalate_to=reviewer, shadow=shadow)
    def bill(ctx: Any, event: dict[str, Any]) -> Any:
        if event["type"] not in KNOWN:
            return ctx.escalate(event, reason="unknown event type")
        seen["billed"].append(event["customer"])
        return {"customer": event["customer"], "amount_cents": KNOWN[event["type"]]}

    return seen


def test_a_job_escalates_what_it_does_not_know_to_its_agent(app: App) -> None:
    seen = billing_app(app)
    known = app.run_now("bill", {"type": "subscription_upgraded", "customer": "acme"})
    odd = app.run_now("bill", {"type": "refund_requested", "customer": "zed"})
    app.drain()

    assert known.result() == {"customer": "acme", "amount_cents": 1500}
    marker = odd.result()
    assert (marker["escalated_to"], marker["reason"]) == ("billing-reviewer", "unknown event type")
    child = app.get_run(marker["run_id"])
    assert (child.kind, child.trigger, child.parent_id) == ("agent", "escalation", odd.id)
    assert child.state == RunState.SUCCEEDED
    assert child.result == {"customer": "zed", "amount_cents": 99}
    assert seen["agent_tasks"][0] == {
        "item": {"type": "refund_requested", "customer": "zed"},
        "reason": "unknown event type",
        "escalated_from": {"run_id": odd.id, "name": "bill"},
    }
    assert seen["created"] == [("zed", 99)]  # an escalated agent acts


def test_an_escalation_is_enqueued_once_when_the_job_runs_again(app: App) -> None:
    billing_app_calls: list[int] = []
    model = ScriptedModel("once", script=[answer({"ok": True})])
    app.agent(Agent("fixer", model, "Fix it.", output=dict[str, Any]))

    @app.job(escalate_to="fixer", retries=2)
    def flaky(ctx: Any, item: Any) -> Any:
        handed = ctx.escalate(item, reason="odd")
        billing_app_calls.append(1)
        if len(billing_app_calls) < 3:
            raise RuntimeError("crashed after escalating")
        return handed

    handle = app.run_now("flaky", {"n": 1})
    app.drain()
    assert handle.get().attempt == 3
    agents = [r for r in app.runs() if r.kind == "agent"]
    assert len(agents) == 1 and agents[0].parent_id == handle.id


def test_a_non_serialisable_item_is_refused_clearly_and_nothing_is_lost(app: App) -> None:
    billing_app(app)

    @app.job(escalate_to="billing-reviewer")
    def odd(ctx: Any, event: Any) -> Any:
        return ctx.escalate({"when": object()}, reason="cannot tell")

    handle = app.run_now("odd", {"id": 7})
    app.drain()
    with pytest.raises(RunFailed, match="the item escalated by 'odd' is not JSON-serialisable"):
        handle.result()
    run = handle.get()
    assert run.attempt == 1 and run.payload == {"id": 7}  # not retried, its input kept
    assert [r.kind for r in app.runs()] == ["job"]  # no agent run was made


def test_escalation_settings_are_checked_at_definition(app: App) -> None:
    with pytest.raises(ConfigError, match="shadow= needs escalate_to=agent"):
        app.job(lambda ctx: None, shadow=0.1, name="a")
    with pytest.raises(ConfigError, match="shadow must be a fraction between 0 and 1"):
        app.job(lambda ctx: None, escalate_to="x", shadow=5, name="b")


# -- shadow mode --------------------------------------------------------------------------


def test_compare_is_per_field() -> None:
    assert compare({"a": 1, "b": "x"}, {"a": 1.0, "b": "y"}) == {"a": True, "b": False}
    assert compare({"a": 1}, {"a": 1, "c": 2}) == {"a": True, "c": False}
    assert compare("approve", "approve") == {"(value)": True}
    assert compare({"a": True}, {"a": 1}) == {"a": False}  # a bool is not a number here


def test_shadow_runs_record_agreement_and_never_act(app: App) -> None:
    def agent_says(item: dict[str, Any]) -> dict[str, Any]:
        amount = KNOWN[item["type"]] if item["customer"] != "bob" else 1
        return {"customer": item["customer"], "amount_cents": amount}

    seen = billing_app(app, shadow=1.0, agent_says=agent_says)
    for customer in ("acme", "bob", "carol"):
        app.run_now("bill", {"type": "subscription_upgraded", "customer": customer})
    app.drain()

    assert seen["billed"] == ["acme", "bob", "carol"]
    assert seen["created"] == []  # shadow runs never act: create_billing_event did not run
    shadows = [r for r in app.runs() if r.trigger == "shadow"]
    assert len(shadows) == 3 and all(r.state == RunState.SUCCEEDED for r in shadows)
    assert all("job_result" not in json.dumps(t) for t in seen["agent_tasks"])  # no peeking
    records = app.store.shadow_records("bill")
    by_customer = {r.job_result["customer"]: r for r in records}
    assert by_customer["acme"].fields == {"amount_cents": True, "customer": True}
    assert by_customer["bob"].fields == {"amount_cents": False, "customer": True}

    url = app.database_url.original
    result = CliRunner().invoke(cli, ["--database-url", url, "shadow", "report", "bill", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["compared"], report["agreed"]) == (3, 2)
    assert report["agreement_rate"] == pytest.approx(2 / 3)
    assert report["fields"]["amount_cents"] == {"agree": 2, "disagree": 1, "rate": 2 / 3}
    assert [d["job"]["customer"] for d in report["disagreements"]] == ["bob"]
    assert report["tokens"] > 0
    table = CliRunner().invoke(cli, ["--database-url", url, "shadow", "report", "bill"])
    assert "3 items compared, agreement 66.7%" in table.stdout


def test_shadow_sampling_is_deterministic_and_skips_escalated_items(app: App) -> None:
    billing_app(app, shadow=0.5)
    handles = [
        app.run_now("bill", {"type": "subscription_upgraded", "customer": f"c{i}"})
        for i in range(40)
    ]
    odd = app.run_now("bill", {"type": "odd", "customer": "x"})
    app.drain()
    from rota.escalation import sampled

    expected = {h.id for h in handles if sampled(h.id, 0.5)}
    shadows = [r for r in app.runs(limit=500) if r.trigger == "shadow"]
    assert {r.parent_id for r in shadows} == expected
    assert 5 < len(expected) < 35
    assert odd.id not in {r.parent_id for r in shadows}


# -- the decision cache -------------------------------------------------------------------


def test_identical_inputs_reuse_a_cached_decision_within_its_ttl(database_url: str) -> None:
    clock = FakeClock()
    app = App(database_url, clock=clock)
    model = ScriptedModel("cached", script=[answer({"approve": True})])
    app.agent(
        Agent("approver", model, "Approve?", output=dict[str, Any], cache=True, cache_ttl="1h")
    )
    try:
        first = app.run_now("approver", {"amount": 5, "customer": "acme"})
        app.drain()
        again = app.run_now("approver", {"customer": "acme", "amount": 5})  # same, reordered
        other = app.run_now("approver", {"customer": "acme", "amount": 6})
        app.drain()
        assert model.calls == 2  # the first and the different input; the repeat was a hit
        assert again.result() == first.result() == {"approve": True}
        hit = {s.key: s.result for s in app.store.steps(again.id)}["cache:lookup"]
        assert hit["hit"] is True and hit["from_run"] == first.id
        assert not any(s.key.startswith("model#") for s in app.store.steps(again.id))
        assert app.store.model_calls(again.id) == []  # zero tokens: no model call

        clock.advance(3601)
        app.run_now("approver", {"amount": 5, "customer": "acme"})
        app.drain()
        assert model.calls == 3  # expired: asked again
        assert other.result() == {"approve": True}
    finally:
        app.close()


def test_runs_show_tells_the_escalation_chain(app: App) -> None:
    billing_app(app)
    odd = app.run_now("bill", {"type": "refund_requested", "customer": "zed"})
    app.drain()
    child_id = odd.result()["run_id"]
    url = app.database_url.original
    shown = CliRunner().invoke(cli, ["--database-url", url, "runs", "show", child_id, "--json"])
    assert shown.exit_code == 0, shown.output
    links = json.loads(shown.stdout)["chain"]
    assert [(c["depth"], c["name"], c["kind"], c["id"]) for c in links] == [
        (0, "bill", "job", odd.id),
        (1, "billing-reviewer", "agent", child_id),
    ]
    text = CliRunner().invoke(cli, ["--database-url", url, "runs", "show", odd.id]).stdout
    assert "escalation chain" in text
    assert f"billing-reviewer (agent, escalation) SUCCEEDED  {child_id}" in text
