"""The three ways of paying for the demo's AI work that the summary compares.

Figures of the kind platforms publish; change them here to see another answer. Every plan
also bills the job path's worker time at the same compute rate, so job, agent and hybrid are
compared on one footing (rota.cost.compare).
"""

from __future__ import annotations

from decimal import Decimal

from ..cost.plans import ApiPlan, Plan, SessionPlan, SubscriptionPlan

COMPUTE_USD_PER_HOUR = Decimal("0.10")  # one worker slot, an hour

PLANS: tuple[Plan, ...] = (
    ApiPlan(
        name="api",
        compute_usd_per_hour=COMPUTE_USD_PER_HOUR,
        description="every token at list price",
    ),
    SubscriptionPlan(
        name="subscription",
        monthly_fee=Decimal(200),
        max_runs_per_hour=1_000,
        over_cap="drop",
        compute_usd_per_hour=COMPUTE_USD_PER_HOUR,
        description="$200 a month (prorated to the demo's window), at most 1,000 AI runs an hour",
    ),
    SessionPlan(
        name="session",
        session_usd_per_hour=Decimal("0.08"),
        compute_usd_per_hour=COMPUTE_USD_PER_HOUR,
        description="$0.08 per agent session-hour, plus tokens at list price",
    ),
)
