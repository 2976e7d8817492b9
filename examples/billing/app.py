"""The seed scenario: webhook events -> a deterministic billing job for the event types it
knows -> escalation of unknown or ambiguous events to an agent with three tools -> a human
approval for billing events over $100.

    ROTA_DATABASE_URL=sqlite:///billing.db rota dev --app examples.billing.app:app
    rota shadow report bill       # how often the agent agrees with the job

Offline by default: the agent's model is `scripted:billing-reviewer`, a deterministic stand-in
(`policy.py`). Set BILLING_MODEL=anthropic:claude-sonnet-4-5 (and ANTHROPIC_API_KEY) to ask a
real model instead; nothing else changes.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel

from rota import Agent, App, ToolContext, on_webhook, tool
from rota.testing import register_scripted

from .billing import LEDGER, PLANS, SUBSCRIPTIONS, prorated_delta
from .policy import scripted_reviewer

APPROVAL_THRESHOLD_CENTS = 10_000  # billing events over $100 need a human
KNOWN_TYPES = ("subscription_upgraded", "subscription_downgraded")

app = App(os.environ.get("ROTA_DATABASE_URL"))
app.principal("svc-billing", scopes=["billing:read", "billing:write"])
app.principal("finance-lead", kind="user", roles=["approver:finance"])


class BillingDecision(BaseModel):
    customer: str
    amount_cents: int
    action: Literal["charge", "credit", "none"]


# -- the agent's tools --------------------------------------------------------------------


@tool(scopes=["billing:read"], read_only=True)
def query_subscription(customer: str) -> dict[str, Any]:
    """The customer's current subscription: plan, seats, days left in the cycle."""
    found = SUBSCRIPTIONS.get(customer)
    if found is None:
        raise LookupError(f"no subscription for {customer!r}")
    return {"customer": customer, **found, "plan_price_cents": PLANS[str(found["plan"])]}


@tool(scopes=["billing:read"], read_only=True)
def calculate_delta(customer: str, to_plan: str, seats: int | None = None) -> dict[str, Any]:
    """What moving the customer to `to_plan` (and `seats`) costs for the rest of the cycle.

    Args:
        customer: The customer id.
        to_plan: The plan after the change.
        seats: The seats after the change (default: unchanged).
    """
    sub = SUBSCRIPTIONS[customer]
    if to_plan not in PLANS:
        raise ValueError(f"unknown plan {to_plan!r}; plans: {', '.join(PLANS)}")
    old = PLANS[str(sub["plan"])] * int(sub["seats"])
    new = PLANS[to_plan] * (seats or int(sub["seats"]))
    delta = round((new - old) * int(sub["days_left"]) / 30)
    return {"customer": customer, "amount_cents": delta}


@tool(
    scopes=["billing:write"],
    requires_approval=lambda args: abs(args["amount_cents"]) > APPROVAL_THRESHOLD_CENTS,
    approvers="finance",
)
def create_billing_event(
    ctx: ToolContext[None], customer: str, amount_cents: int, reason: str
) -> str:
    """Create a billing event (a charge, or a credit when negative)."""
    return LEDGER.record(ctx.idempotency_key, customer, amount_cents, reason)


register_scripted("billing-reviewer", scripted_reviewer())

reviewer = Agent(
    name="billing-reviewer",
    model=os.environ.get("BILLING_MODEL", "scripted:billing-reviewer"),
    instructions=(
        "You resolve billing events the billing job could not handle. Look up the "
        "subscription, compute the prorated amount with calculate_delta, create exactly one "
        "billing event when money changes hands, then answer with the decision. Policy: no "
        "credit is given in the last 7 days of a billing cycle."
    ),
    tools=[query_subscription, calculate_delta, create_billing_event],
    output=BillingDecision,
    max_steps=6,
    run_as="svc-billing",
)
app.agent(reviewer, concurrency=4, retries=2)


# -- the deterministic job ----------------------------------------------------------------


@app.job(
    trigger=on_webhook("billing", secret_env="BILLING_WEBHOOK_SECRET"),
    run_as="svc-billing",
    escalate_to=reviewer,
    shadow=float(os.environ.get("BILLING_SHADOW", "0.1")),
    retries=3,
)
def bill(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Bill plan changes of the shapes we know; hand everything else to the agent."""
    if event.get("type") not in KNOWN_TYPES:
        return ctx.escalate(event, reason=f"unknown event type {event.get('type')!r}")
    sub = SUBSCRIPTIONS.get(event.get("customer", ""))
    if sub is None or sub["plan"] != event.get("from_plan") or event.get("to_plan") not in PLANS:
        return ctx.escalate(event, reason="event does not match the subscription on file")
    amount = prorated_delta(
        event["from_plan"], event["to_plan"], int(sub["days_left"]), int(sub["seats"])
    )
    LEDGER.record(ctx.idempotency_key, event["customer"], amount, event["type"])
    action = "charge" if amount > 0 else "credit" if amount < 0 else "none"
    return {"customer": event["customer"], "amount_cents": amount, "action": action}
