"""The billing domain of the example: plans, subscriptions and a ledger of billing events.

A stand-in for a real billing system, small enough to read in one go. The ledger is
idempotent by key: a tool call re-executed after a crash (same idempotency key) does not
bill twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

PLANS = {"free": 0, "starter": 1_900, "pro": 4_900, "team": 14_900, "enterprise": 99_900}
"""Monthly price of each plan, in cents."""

SUBSCRIPTIONS = {
    "acme": {"plan": "pro", "seats": 1, "days_left": 30},
    "globex": {"plan": "team", "seats": 12, "days_left": 14},
    "initech": {"plan": "starter", "seats": 1, "days_left": 3},
    "umbrella": {"plan": "enterprise", "seats": 40, "days_left": 20},
}


@dataclass
class Ledger:
    events: dict[str, dict[str, object]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, customer: str, amount_cents: int, reason: str) -> str:
        with self._lock:
            if key not in self.events:
                self.events[key] = {
                    "customer": customer,
                    "amount_cents": amount_cents,
                    "reason": reason,
                }
            return f"billing event {key} for {customer}: {amount_cents} cents"

    def for_customer(self, customer: str) -> list[dict[str, object]]:
        return [e for e in self.events.values() if e["customer"] == customer]


LEDGER = Ledger()


def prorated_delta(from_plan: str, to_plan: str, days_left: int, seats: int = 1) -> int:
    """What a plan change costs for the rest of a 30-day cycle, in cents (negative: credit)."""
    return round((PLANS[to_plan] - PLANS[from_plan]) * seats * days_left / 30)
