"""The demo's domain: payment webhooks, the billing job that knows most of them, and the
agent that takes the rest.

The job bills the event types it knows, in US dollars. About 1% of events do not fit (an
unknown type, such as a dispute, or a foreign currency) and the job escalates them to the
agent `payment-reviewer`. The agent looks the customer up, converts the amount, and posts a
ledger entry; an entry over `APPROVAL_THRESHOLD_CENTS` waits for a human with the role
`approver:finance`. A 5% sample of the events the job handled also goes to the agent in
shadow mode, so the agreement of the two is measured.
"""

from __future__ import annotations

import hashlib
import os
import threading
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from ..agentloop.agent import Agent
from ..agents.tools import ToolContext, tool
from ..app import App
from ..cost.price import Price
from ..scheduling.webhooks import on_webhook
from .policy import SCRIPTED_MODEL, register_reviewer

HOOK = "payments"
JOB = "bill_payment"
AGENT = "payment-reviewer"
SECRET_ENV = "ROTA_DEMO_WEBHOOK_SECRET"
APPROVAL_THRESHOLD_CENTS = 15_000  # ledger entries over $150 wait for a human
SHADOW_SAMPLE = 0.05
AGENT_CONCURRENCY = 24
KNOWN = {"invoice.paid": 1, "charge.refunded": -1, "invoice.payment_failed": 0}
EXCEPTIONAL = ("charge.dispute.created", "invoice.paid")  # a dispute; a payment in EUR
USD_PER = {"usd": Decimal(1), "eur": Decimal("1.08"), "gbp": Decimal("1.27")}
# A scripted model has no list price: the demo prices it as the model it stands for.
SIMULATED_PRICE = Price(
    input=Decimal(3),
    output=Decimal(15),
    cache_write_5m=Decimal("3.75"),
    cache_read=Decimal("0.30"),
    source="simulated at anthropic:claude-sonnet-4-5 list price",
)


class PaymentDecision(BaseModel):
    """What the job returns, and what the agent must answer: compared field by field."""

    customer: str
    delta_cents: int
    action: Literal["credit", "debit", "none"]


class Ledger:
    """The demo's stand-in for a billing system: one entry per idempotency key."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def post(self, key: str, customer: str, delta_cents: int) -> str:
        with self._lock:
            self.entries.setdefault(key, (customer, delta_cents))
        return f"ledger entry {key}: {customer} {delta_cents:+} cents"


def synthetic_event(batch: str, i: int) -> dict[str, Any]:
    """Event `i` of a run of the demo: about 1 in 100 is one the job cannot handle. Its
    content depends on `i` alone, so every run of the demo meets the same exceptions; its
    id on `batch` too, so a second run on the same database is not taken for a replay."""
    digest = hashlib.sha256(f"event:{i}".encode()).digest()
    exceptional = digest[0] < 3  # 3/256: about 1.2%
    kind = EXCEPTIONAL[digest[1] % 2] if exceptional else list(KNOWN)[digest[1] % len(KNOWN)]
    currency = "eur" if exceptional and kind == "invoice.paid" else "usd"
    top = 40_000 if exceptional else 20_000
    return {
        "id": f"evt_{batch}_{i:06d}",
        "type": kind,
        "customer": f"cus_{int.from_bytes(digest[2:4], 'big') % 400:04d}",
        "amount_cents": 500 + int.from_bytes(digest[4:6], "big") % top,
        "currency": currency,
    }


def customer_status(customer: str) -> str:
    """About 1 customer in 10 is on fraud watch: a rule the agent's instructions state and
    the job's code does not know, so shadow mode finds the difference on their refunds."""
    return "fraud_watch" if hashlib.sha256(customer.encode()).digest()[0] < 26 else "active"


def decision(customer: str, delta: int) -> dict[str, Any]:
    action = "credit" if delta > 0 else "debit" if delta < 0 else "none"
    return {"customer": customer, "delta_cents": delta, "action": action}


def build_app(database_url: str | None, model: str | None = None) -> tuple[App, Ledger]:
    """The demo's app on `database_url`; `model` replaces the scripted reviewer."""
    os.environ.setdefault(SECRET_ENV, "whsec_" + "ZGVtby1zZWNyZXQtb2YtYXQtbGVhc3QtMzItYnl0ZXM=")
    app = App(database_url)
    ledger = Ledger()
    app.principal("svc-billing", scopes=["billing:read", "billing:write"])
    app.principal("demo-approver", kind="user", roles=["approver:finance"])
    reviewer = _reviewer(ledger, model)
    app.agent(reviewer, concurrency=AGENT_CONCURRENCY, retries=2)

    @app.job(
        name=JOB,
        trigger=on_webhook(HOOK, secret_env=SECRET_ENV),
        run_as="svc-billing",
        escalate_to=reviewer,
        shadow=SHADOW_SAMPLE,
        retries=3,
    )
    def bill_payment(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Bill the US-dollar events of the types we know; escalate everything else."""
        sign = KNOWN.get(event.get("type", ""))
        if sign is None:
            return ctx.escalate(event, reason=f"unknown event type {event.get('type')!r}")  # type: ignore[no-any-return]
        if event.get("currency") != "usd":
            return ctx.escalate(event, reason=f"currency {event.get('currency')!r}")  # type: ignore[no-any-return]
        delta = sign * int(event["amount_cents"])
        ledger.post(ctx.idempotency_key, event["customer"], delta)
        return decision(event["customer"], delta)

    return app, ledger


def _reviewer(ledger: Ledger, model: str | None) -> Agent:
    @tool(scopes=["billing:read"], read_only=True)
    def lookup_customer(customer: str) -> dict[str, Any]:
        """The customer's account: its status (active or fraud_watch)."""
        return {"customer": customer, "status": customer_status(customer)}

    @tool(scopes=["billing:read"], read_only=True)
    def convert_to_usd(amount_cents: int, currency: str) -> dict[str, Any]:
        """An amount in US cents, at today's rate."""
        rate = USD_PER.get(currency.lower())
        if rate is None:
            raise ValueError(f"no rate for {currency!r}; rates: {', '.join(USD_PER)}")
        return {"amount_cents": int(amount_cents * rate)}

    @tool(
        scopes=["billing:write"],
        requires_approval=lambda args: abs(args["delta_cents"]) > APPROVAL_THRESHOLD_CENTS,
        approvers="finance",
    )
    def post_ledger_entry(
        ctx: ToolContext[None], customer: str, delta_cents: int, reason: str
    ) -> str:
        """Post one ledger entry (a credit when positive, a debit when negative)."""
        return ledger.post(ctx.idempotency_key, customer, delta_cents)

    scripted = model is None
    if scripted:
        register_reviewer()
    return Agent(
        name=AGENT,
        model=model or SCRIPTED_MODEL,
        instructions=(
            "You resolve payment events the billing job could not handle. Look the customer "
            "up; convert a foreign amount to US cents; a paid invoice credits the customer, "
            "a refund or a dispute debits them; post exactly one ledger entry when money "
            "moves, then answer with the decision. Policy: refunds for customers on fraud "
            "watch are not posted (answer none)."
        ),
        tools=[lookup_customer, convert_to_usd, post_ledger_entry],
        output=PaymentDecision,
        max_steps=6,
        run_as="svc-billing",
        price=SIMULATED_PRICE if scripted else None,
    )
