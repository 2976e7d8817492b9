"""__PROJECT__: billing events arrive as signed webhooks; a deterministic job bills the event
types it knows and escalates the rest to an agent, whose charges over $100 wait for a human.

    rota dev                                   # POST /hooks/billing, signed with
    export BILLING_WEBHOOK_SECRET=change-me    # the secret in BILLING_WEBHOOK_SECRET

The agent's model is `scripted:billing-reviewer`, an offline stand-in. Set
BILLING_MODEL=anthropic:claude-sonnet-4-5 (and ANTHROPIC_API_KEY) to ask a real model.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel

from rota import Agent, App, on_webhook, tool
from rota.testing import answer, call, register_scripted

PRICES_CENTS = {"basic": 1_000, "pro": 5_000}  # per seat and month
APPROVAL_THRESHOLD_CENTS = 10_000  # charges over $100 wait for a human

app = App(os.environ.get("ROTA_DATABASE_URL"))  # default: sqlite:///rota.db
app.principal("svc-billing", scopes=["billing:read", "billing:write"])
app.principal("finance-lead", kind="user", roles=["approver:finance"])


class Decision(BaseModel):
    """What the agent decided about one event."""

    customer: str
    amount_cents: int
    action: Literal["charge", "credit", "none"]


@tool(scopes=["billing:read"], read_only=True)
def plan_price(plan: str) -> int:
    """The monthly price of `plan` per seat, in cents."""
    if plan not in PRICES_CENTS:
        raise LookupError(f"unknown plan {plan!r}; plans: {', '.join(PRICES_CENTS)}")
    return PRICES_CENTS[plan]


@tool(
    scopes=["billing:write"],
    requires_approval=lambda args: abs(args["amount_cents"]) > APPROVAL_THRESHOLD_CENTS,
    approvers="finance",
)
def create_charge(customer: str, amount_cents: int, reason: str) -> str:
    """Record a charge (a credit when negative) for the customer."""
    return f"charged {customer} {amount_cents} cents: {reason}"


register_scripted(
    "billing-reviewer",
    script=[
        call("plan_price", plan="pro"),
        call("create_charge", customer="acme", amount_cents=5_000, reason="seat added"),
        answer({"customer": "acme", "amount_cents": 5_000, "action": "charge"}),
    ],
)
reviewer = Agent(
    name="billing-reviewer",
    model=os.environ.get("BILLING_MODEL", "scripted:billing-reviewer"),
    instructions=(
        "You resolve billing events the billing job could not handle. Look up prices with "
        "plan_price, create at most one charge with create_charge, then answer with the "
        "decision as JSON: customer, amount_cents, action (charge, credit or none)."
    ),
    tools=[plan_price, create_charge],
    output=Decision,
    max_steps=6,
    run_as="svc-billing",
)


@app.job(
    trigger=on_webhook("billing", secret_env="BILLING_WEBHOOK_SECRET"),
    run_as="svc-billing",
    escalate_to=reviewer,
    retries=3,
)
def bill(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Bill plan changes; hand any other event type to the agent."""
    if event.get("type") != "plan_changed" or event.get("plan") not in PRICES_CENTS:
        return ctx.escalate(event, reason=f"cannot bill event type {event.get('type')!r}")
    amount = PRICES_CENTS[event["plan"]] * int(event.get("seats", 1))
    return {"customer": event["customer"], "amount_cents": amount, "action": "charge"}
