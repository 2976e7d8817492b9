"""The seed scenario in examples/billing, on both databases, through its webhook:
known events are billed by the job; unknown or ambiguous ones go to the agent (scripted);
billing events over $100 wait for a human; shadow mode reports agreement."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from rota.cli import app as cli
from rota.model import RunState
from rota.scheduling.webhooks import sign_standard

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture
def example(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh import of examples.billing.app on the test's database."""
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("BILLING_SHADOW", "0")
    monkeypatch.syspath_prepend(str(ROOT))
    for name in [m for m in sys.modules if m.startswith("examples")]:
        del sys.modules[name]
    module = importlib.import_module("examples.billing.app")
    billing = importlib.import_module("examples.billing.billing")
    billing.LEDGER.events.clear()
    yield module
    module.app.close()


def deliver(example: ModuleType, event: dict[str, Any], delivery: str) -> str:
    body = json.dumps(event).encode()
    headers = sign_standard(SECRET, delivery, time.time(), body)
    emitted = example.app.receive_webhook("billing", headers, body)
    [run] = emitted.runs
    return run.id


def ledger(example: ModuleType) -> list[dict[str, Any]]:
    return list(importlib.import_module("examples.billing.billing").LEDGER.events.values())


def test_known_events_are_billed_by_the_job_alone(example: ModuleType) -> None:
    run_id = deliver(
        example,
        {
            "type": "subscription_upgraded",
            "customer": "acme",
            "from_plan": "pro",
            "to_plan": "team",
        },
        "evt_1",
    )
    example.app.drain()
    run = example.app.get_run(run_id)
    assert run.result == {"customer": "acme", "amount_cents": 10_000, "action": "charge"}
    assert ledger(example) == [
        {"customer": "acme", "amount_cents": 10_000, "reason": "subscription_upgraded"}
    ]
    assert [r.kind for r in example.app.runs()] == ["job"]  # no agent involved


def test_an_unknown_event_is_escalated_and_the_agent_bills_it(example: ModuleType) -> None:
    run_id = deliver(example, {"type": "seats_changed", "customer": "initech", "seats": 2}, "evt_2")
    example.app.drain()
    marker = example.app.get_run(run_id).result
    assert marker["escalated_to"] == "billing-reviewer"
    agent_run = example.app.get_run(marker["run_id"])
    assert agent_run.state == RunState.SUCCEEDED, agent_run.error
    # starter 1,900 x 1 seat -> x 2 seats, 3 of 30 days left: +190 cents
    assert agent_run.result == {"customer": "initech", "amount_cents": 190, "action": "charge"}
    [event] = ledger(example)
    assert (event["customer"], event["amount_cents"]) == ("initech", 190)
    tools = [s.key for s in example.app.store.steps(agent_run.id) if s.key.startswith("tool:")]
    assert tools == ["tool:query_subscription", "tool:calculate_delta", "tool:create_billing_event"]


def test_an_event_that_contradicts_the_subscription_is_escalated(example: ModuleType) -> None:
    run_id = deliver(
        example,
        {
            "type": "subscription_upgraded",
            "customer": "acme",
            "from_plan": "free",
            "to_plan": "pro",
        },
        "evt_3",
    )
    example.app.drain()
    assert example.app.get_run(run_id).result["reason"] == (
        "event does not match the subscription on file"
    )


@pytest.mark.parametrize("approve", [True, False])
def test_a_billing_event_over_100_dollars_waits_for_finance(
    example: ModuleType, approve: bool
) -> None:
    # umbrella: enterprise 99,900 x 40 seats -> x 60 seats, 20 of 30 days left: +1,332,000
    run_id = deliver(
        example, {"type": "seats_changed", "customer": "umbrella", "seats": 60}, "evt_big"
    )
    app = example.app
    app.drain()
    agent_run = app.get_run(app.get_run(run_id).result["run_id"])
    assert agent_run.state == RunState.WAITING
    assert ledger(example) == []  # nothing billed while the human decides
    [request] = app.store.approvals()
    assert request.approvers == ("finance",)
    assert request.context["arguments"]["amount_cents"] == 1_332_000
    assert request.context["tool"] == "create_billing_event"
    comment = "annual deal signed" if approve else "seats not confirmed yet"
    app.store.decide_approval(
        request.id, "finance-lead", approve, comment, app.clock.now(), via="test"
    )
    app.drain()
    done = app.get_run(agent_run.id)
    assert done.state == RunState.SUCCEEDED
    if approve:
        assert done.result == {
            "customer": "umbrella",
            "amount_cents": 1_332_000,
            "action": "charge",
        }
        assert [e["amount_cents"] for e in ledger(example)] == [1_332_000]
    else:  # the model read the rejection (and the comment) and billed nothing
        assert done.result == {"customer": "umbrella", "amount_cents": 0, "action": "none"}
        assert ledger(example) == []
        steps = {s.key: s.result for s in app.store.steps(agent_run.id)}
        assert "rejected by finance-lead: seats not confirmed yet" in json.dumps(steps)
    decided = app.store.audit_records(action="approval.granted" if approve else "approval.rejected")
    assert [(r.actor, r.actor_kind) for r in decided] == [("finance-lead", "human")]


def test_shadow_mode_on_the_example_reports_agreement(
    database_url: str, example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    example.app.close()
    monkeypatch.setenv("BILLING_SHADOW", "1")
    for name in [m for m in sys.modules if m.startswith("examples")]:
        del sys.modules[name]
    shadowed = importlib.import_module("examples.billing.app")
    events = [
        ("subscription_upgraded", "acme", "pro", "team"),  # the job and the agent agree
        ("subscription_downgraded", "globex", "team", "pro"),  # a credit: the same
        # A credit 3 days before the cycle ends: the agent's policy says none, the job's
        # code does not know that rule. Shadow mode finds the difference.
        ("subscription_downgraded", "initech", "starter", "free"),
    ]
    for i, (kind, customer, old, new) in enumerate(events):
        event = {"type": kind, "customer": customer, "from_plan": old, "to_plan": new}
        deliver(shadowed, event, f"evt_s{i}")
    shadowed.app.drain()
    result = CliRunner().invoke(
        cli, ["--database-url", database_url, "shadow", "report", "bill", "--json"]
    )
    shadowed.app.close()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["compared"], report["agreed"]) == (3, 2)
    assert report["fields"]["amount_cents"]["disagree"] == 1
    assert report["fields"]["customer"] == {"agree": 3, "disagree": 0, "rate": 1.0}
    [odd] = report["disagreements"]
    assert odd["job"] == {"customer": "initech", "amount_cents": -190, "action": "credit"}
    assert odd["agent"] == {"customer": "initech", "amount_cents": 0, "action": "none"}
    # Shadow runs never act: only the job's three billing events are in the ledger.
    assert len(ledger(shadowed)) == 3
