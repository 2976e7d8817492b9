"""The overview's figures, read from the store in one blocking call (`overview_figures`).

Rates, failure share and duration percentiles come from the runs created since midnight UTC
(one index range scan, `window_runs`, capped at `MAX_RUNS`: past that the figures describe
the newest runs and the page says so); cost from the recorded usage of the same runs; the
queue, approvals and budgets from the gauges the metrics endpoint reads.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ...app import App
from ...cost.budgets import budget_status
from ...cost.pricing import from_pusd
from ...model import RunState
from ...storage.base import Store
from ...storage.dashboard import WindowRun

MAX_RUNS = 50_000
NEAR_LIMIT = 0.8  # a budget this far through its limit is shown as near it
LATE_S = 60.0  # a schedule this far past its next fire time, unpaused, is late
_FAILED = (RunState.FAILED.value,)
_FINISHED = (RunState.SUCCEEDED.value, RunState.FAILED.value, RunState.CANCELLED.value)


@dataclass
class NameFigures:
    """One job, workflow or agent today."""

    name: str
    kind: str
    runs: int = 0
    failed: int = 0
    finished: int = 0
    durations: list[float] = field(default_factory=list)
    cost: Decimal = Decimal(0)

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    @property
    def p50(self) -> float | None:
        return percentile(self.durations, 0.50)

    @property
    def p95(self) -> float | None:
        return percentile(self.durations, 0.95)


@dataclass(frozen=True)
class ScheduleFigure:
    name: str
    job: str
    problem: str  # late | silent | paused
    detail: str


@dataclass(frozen=True)
class BudgetFigure:
    key: str
    per: str
    used: float  # the largest share of any of its limits, spent plus held


@dataclass
class Overview:
    now: float
    day_start: float
    per_minute: list[tuple[str, float]]
    names: list[NameFigures]
    sampled: bool
    runs_today: int
    failed_today: int
    finished_today: int
    cost_today: Decimal
    queued: int
    due: int
    lag_s: float | None
    running: int
    waiting: int
    approvals_waiting: int
    oldest_approval: float | None
    schedules: list[ScheduleFigure]
    budgets: list[BudgetFigure]

    @property
    def failure_rate(self) -> float | None:
        return self.failed_today / self.finished_today if self.finished_today else None

    @property
    def p50(self) -> float | None:
        return percentile([d for n in self.names for d in n.durations], 0.50)

    @property
    def p95(self) -> float | None:
        return percentile([d for n in self.names for d in n.durations], 0.95)


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def overview_figures(app: App) -> Overview:
    """Everything the overview shows, as of the app's clock."""
    store, now = app.store, app.clock.now()
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_start = min(today.timestamp(), now - 3600)  # the chart's hour may start yesterday
    runs = store.window_runs(day_start, now + 1, MAX_RUNS)
    names = _by_name([r for r in runs if r.created_at >= today.timestamp()], store, today, now)
    live = store.live_runs(now)
    queued = [g for g in live if g.state == RunState.ENQUEUED.value]
    oldest_due = min((g.oldest_due for g in queued if g.oldest_due is not None), default=None)
    approvals = store.waiting_approvals()
    return Overview(
        now=now,
        day_start=today.timestamp(),
        per_minute=_per_minute(runs, now),
        names=sorted(names.values(), key=lambda n: (-n.runs, n.name)),
        sampled=len(runs) >= MAX_RUNS,
        runs_today=sum(n.runs for n in names.values()),
        failed_today=sum(n.failed for n in names.values()),
        finished_today=sum(n.finished for n in names.values()),
        cost_today=sum((n.cost for n in names.values()), Decimal(0)),
        queued=sum(g.count for g in queued),
        due=sum(g.due for g in queued),
        lag_s=None if oldest_due is None else max(0.0, now - oldest_due),
        running=sum(g.count for g in live if g.state == RunState.RUNNING.value),
        waiting=sum(g.count for g in live if g.state == RunState.WAITING.value),
        approvals_waiting=approvals.count,
        oldest_approval=approvals.oldest,
        schedules=_schedules(app, now),
        budgets=_budgets(app, now),
    )


def _by_name(
    runs: list[WindowRun], store: Store, today: datetime, now: float
) -> dict[str, NameFigures]:
    found: dict[str, NameFigures] = {}
    owner: dict[str, str] = {}
    for run in runs:
        figures = found.setdefault(run.name, NameFigures(run.name, run.kind))
        owner[run.id] = run.name
        figures.runs += 1
        if run.state in _FINISHED:
            figures.finished += 1
            figures.failed += run.state in _FAILED
            if run.started_at is not None and run.finished_at is not None:
                figures.durations.append(max(0.0, run.finished_at - run.started_at))
    cost: dict[str, int] = defaultdict(int)
    for usage in store.run_usage(today.timestamp() - 86_400, now + 1):
        if usage.run_id in owner:
            cost[owner[usage.run_id]] += usage.cost_pusd
    for name, pusd in cost.items():
        found[name].cost = from_pusd(pusd)
    return found


def _per_minute(runs: list[WindowRun], now: float) -> list[tuple[str, float]]:
    """Runs created in each of the last 60 minutes, oldest first."""
    counts = [0] * 60
    end = int(now // 60) * 60 + 60
    for run in runs:
        slot = 59 - int((end - run.created_at) // 60)
        if 0 <= slot < 60:
            counts[slot] += 1
    label = lambda i: datetime.fromtimestamp(end - (60 - i) * 60, UTC).strftime("%H:%M")  # noqa: E731
    return [(label(i), float(c)) for i, c in enumerate(counts)]


def _schedules(app: App, now: float) -> list[ScheduleFigure]:
    found = []
    for schedule in app.store.schedules():
        if schedule.paused:
            found.append(ScheduleFigure(schedule.name, schedule.job, "paused", "paused by hand"))
            continue
        if schedule.next_fire_at is not None and schedule.next_fire_at < now - LATE_S:
            late = f"due {round(now - schedule.next_fire_at)}s ago and not yet fired"
            found.append(ScheduleFigure(schedule.name, schedule.job, "late", late))
            continue
        skip = app.store.schedule_health(schedule.name).last_skip
        if skip is not None:
            found.append(
                ScheduleFigure(schedule.name, schedule.job, "silent", f"last tick skipped: {skip}")
            )
    return found


def _budgets(app: App, now: float) -> list[BudgetFigure]:
    found = []
    for budget in app.budgets:
        status = budget_status(app.store, budget, now)
        limits = budget.budget
        shares = [
            float((status.spent[i] + status.held[i]) / Decimal(limit))
            for i, limit in enumerate((limits.usd, limits.tokens, limits.requests))
            if limit
        ]
        used = max(shares, default=0.0)
        if used >= NEAR_LIMIT:
            found.append(BudgetFigure(budget.key, budget.per, used))
    return found
