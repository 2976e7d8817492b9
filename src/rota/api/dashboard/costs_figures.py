"""The Costs page's figures, from one read of the cost history (rota.cost, as `rota cost
report|compare` and /api/cost): by day, by job/agent/principal/model, job vs agent vs hybrid,
the plan comparison with its dropped-by-cap runs and forecast, and each shared budget's use
against its limits.

The plans compared are those of the file named by `$ROTA_PLANS` (the format of
`rota cost compare --plan`, docs/cost.md); without it, the API plan alone (every token at
list price), and the page says how to add others.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from ...app import App
from ...cost.budgets import BudgetStatus, budget_status
from ...cost.compare import Comparison, compare
from ...cost.history import History, load_history
from ...cost.plans import ApiPlan, Plan, load_plans
from ...cost.records import GroupBy, ReportRow, price_history, report
from ...errors import ConfigError, UnknownPrice
from ..context import ApiError, shown
from ..cost import server_price_overrides

log = logging.getLogger("rota.api")
PLANS_ENV = "ROTA_PLANS"
LIST_PRICE = ApiPlan(name="api", description="every token at list price")
MAX_FILLED_DAYS = 400  # a longer range charts only the days that had runs
GROUPS: dict[str, GroupBy] = {
    "name": "workflow",
    "agent": "agent",
    "principal": "principal",
    "kind": "kind",
}


@dataclass(frozen=True)
class ModelRow:
    """One model's share of the range: runs that used it, its requests, tokens and USD."""

    key: str
    runs: int
    requests: int
    tokens: int
    usd: Decimal


@dataclass(frozen=True)
class BudgetUse:
    """One limit of a shared budget in its current period: spent and held against it."""

    status: BudgetStatus
    unit: str  # usd, tokens or requests
    limit: Decimal
    spent: Decimal
    held: Decimal

    @property
    def share(self) -> float:
        return float((self.spent + self.held) / self.limit) if self.limit else 1.0


@dataclass(frozen=True)
class Plans:
    """The plans compared, where they came from, and why a configured file was not used."""

    plans: list[Plan]
    source: str
    problem: str | None = None


@dataclass(frozen=True)
class CostFigures:
    since: datetime
    until: datetime
    runs: int
    ai_runs: int
    total_usd: Decimal
    by_day: list[tuple[str, Decimal]]
    groups: dict[str, list[ReportRow]]
    by_model: list[ModelRow]
    comparison: Comparison
    plans: Plans
    budgets: list[BudgetUse]


def cost_figures(app: App, since: float, until: float) -> CostFigures:
    """Everything the Costs page shows for runs started in [since, until)."""
    history = _history(app, since, until)
    records, table = history.records, history.table
    plans = configured_plans()
    try:
        groups = {k: report(records, table, by=by) for k, by in GROUPS.items()}
        days = report(records, table, by="day")
        models = by_model(history)
        compared = compare(plans.plans, records, table, window=history.window)
    except UnknownPrice as exc:
        raise ApiError(422, "unknown_price", shown(str(exc), 600)) from None
    return CostFigures(
        since=history.since,
        until=history.until,
        runs=sum(r.runs for r in records),
        ai_runs=sum(r.runs for r in records if r.uses_ai),
        total_usd=sum((r.total_usd for r in groups["kind"]), Decimal(0)),
        by_day=daily(days, history.since, history.until),
        groups=groups,
        by_model=models,
        comparison=compared,
        plans=plans,
        budgets=budget_uses(app),
    )


def configured_plans() -> Plans:
    """The plans of $ROTA_PLANS, or the API plan alone; a file that does not load is said on
    the page (its details in the server log, as they may name server paths)."""
    path = os.environ.get(PLANS_ENV, "").strip()
    if not path:
        return Plans([LIST_PRICE], "list price only")
    try:
        return Plans(load_plans(path), f"${PLANS_ENV}")
    except (ConfigError, OSError) as exc:
        log.warning("costs page: the plan file in $%s does not load: %s", PLANS_ENV, exc)
        problem = f"the plan file in ${PLANS_ENV} does not load (the server log says why)"
        return Plans([LIST_PRICE], "list price only", problem)


def daily(rows: list[ReportRow], since: datetime, until: datetime) -> list[tuple[str, Decimal]]:
    """USD per UTC day of the range, days without runs as zero (when the range is short
    enough to chart every day)."""
    found = {r.key: r.total_usd for r in rows}
    first, last = since.astimezone(UTC).date(), (until - timedelta(microseconds=1)).date()
    if (last - first).days >= MAX_FILLED_DAYS:
        return sorted(found.items())
    span = (last - first).days + 1
    days = [date.fromordinal(first.toordinal() + i).isoformat() for i in range(span)]
    return [(d, found.get(d, Decimal(0))) for d in days]


def by_model(history: History) -> list[ModelRow]:
    """Each model's runs, requests, tokens and list-price USD, most expensive first."""
    runs: dict[str, int] = defaultdict(int)
    requests: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    usd: dict[str, Decimal] = defaultdict(Decimal)
    for priced in price_history(history.records, history.table):
        record = priced.record
        for model, cost in priced.by_model.items():
            usage = record.usage[model]
            runs[model] += record.runs
            requests[model] += usage.requests
            tokens[model] += usage.total
            usd[model] += cost
    rows = [ModelRow(m, runs[m], requests[m], tokens[m], usd[m]) for m in runs]
    return sorted(rows, key=lambda r: (-r.usd, r.key))


def budget_uses(app: App) -> list[BudgetUse]:
    """Every limit of every shared budget the app declares, in its current period."""
    now = app.clock.now()
    found = []
    for budget in sorted(app.budgets, key=lambda b: (b.key, b.per)):
        status = budget_status(app.store, budget, now)
        b = budget.budget
        limits = (
            ("usd", None if b.usd is None else Decimal(str(b.usd)), 0),
            ("tokens", None if b.tokens is None else Decimal(b.tokens), 1),
            ("requests", None if b.requests is None else Decimal(b.requests), 2),
        )
        for unit, limit, at in limits:
            if limit is not None:
                spent, held = Decimal(status.spent[at]), Decimal(status.held[at])
                found.append(BudgetUse(status, unit, limit, spent, held))
    return found


def _history(app: App, since: float, until: float) -> History:
    overrides = server_price_overrides("costs page")
    start, end = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
    try:
        return load_history(app.store, start, end, overrides)
    except UnknownPrice as exc:
        raise ApiError(422, "unknown_price", shown(str(exc), 600)) from None
