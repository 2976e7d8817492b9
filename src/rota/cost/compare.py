"""Recompute a recorded history under billing plans, and pick the cheapest.

`evaluate(plan, records, table)` replays the runs in start order under one plan:

- every run's compute seconds cost `compute_usd_per_hour` (the job path runs on your
  workers whatever the plan; a run dropped by a cap still spent them);
- runs that used a model or held a session ("AI runs") are billed by the plan's kind: all
  tokens at list price (api); session hours, each at least `min_session_seconds`, plus
  tokens at list price (session); covered by the fee while every allowance and cap has
  room when the run starts, else dropped or billed as overage (subscription).

A subscription's monthly fee and monthly allowances are prorated to the part of each UTC
calendar month the window covers, so 30 days across two months pay one month's fee, not two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from ..errors import ConfigError
from .forecast import NO_RUNS, Forecast, ShortHistory, forecast_series
from .plans import ApiPlan, Plan, SessionPlan, SubscriptionPlan
from .price import MILLION
from .prices import PriceTable
from .records import HOUR, PricedRun, RunCost, compute_usd, price_history

Window = tuple[datetime, datetime]
MONTH_FORECAST_DAYS = 30  # a forecast charges monthly_fee * days / 30


@dataclass(frozen=True)
class Breakdown:
    fees: Decimal = Decimal(0)
    tokens: Decimal = Decimal(0)
    sessions: Decimal = Decimal(0)
    compute: Decimal = Decimal(0)
    overage: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.fees + self.tokens + self.sessions + self.compute + self.overage


@dataclass(frozen=True)
class CappedRun:
    """A run that started when a subscription's `limit` was used up."""

    run_id: str
    name: str
    started_at: datetime
    limit: str  # the field: max_runs_per_hour, max_runs_per_day, included_runs ...


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    breakdown: Breakdown
    dropped: tuple[CappedRun, ...]  # not run under this plan (over_cap = "drop")
    overage_runs: tuple[CappedRun, ...]  # run and billed as overage (over_cap = "overage")
    monthly: dict[str, Decimal]  # "YYYY-MM" -> USD, the fee share included
    forecast: Forecast | None  # the next days under this plan, from the trend
    forecast_note: str | None = None  # why there is no forecast (too little history)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def total(self) -> Decimal:
        return self.breakdown.total


@dataclass(frozen=True)
class Comparison:
    """`results` cheapest first. `cheapest_complete` is the cheapest plan that ran every
    run; a plan that dropped runs is cheaper partly because it did less work."""

    results: tuple[PlanResult, ...]
    cheapest: PlanResult
    cheapest_complete: PlanResult | None


def evaluate(
    plan: Plan,
    records: Iterable[RunCost],
    table: PriceTable,
    *,
    window: Window | None = None,
    forecast_days: int = MONTH_FORECAST_DAYS,
) -> PlanResult:
    """`records` billed under `plan`. `window` is the period they cover (default: from the
    first run's UTC day to the end of the last run's); every run must start inside it."""
    runs = price_history(records, table)
    start, end = _window(runs, window)
    months = month_shares(start, end)
    bill = _Bill()
    if isinstance(plan, SubscriptionPlan):
        _subscription(plan, runs, months, bill)
    else:
        for run in runs:
            tokens, sessions = _metered(plan, run)
            bill.add(run, tokens=tokens, sessions=sessions)
    for run in runs:
        bill.add(run, compute=compute_usd(run.record, plan.compute_usd_per_hour))
    fee = plan.monthly_fee if isinstance(plan, SubscriptionPlan) else Decimal(0)
    for month, share in months.items():
        bill.add_fee(month, fee * share)
    fee_ahead = fee * forecast_days / MONTH_FORECAST_DAYS
    trend, note = _trend(runs, bill.daily, forecast_days)
    return PlanResult(
        plan=plan,
        breakdown=bill.breakdown(),
        dropped=tuple(bill.dropped),
        overage_runs=tuple(bill.overage_runs),
        monthly=dict(sorted(bill.monthly.items())),
        forecast=None if trend is None else _with_fee(trend, fee_ahead),
        forecast_note=note,
    )


def compare(
    plans: Sequence[Plan],
    records: Iterable[RunCost],
    table: PriceTable,
    *,
    window: Window | None = None,
) -> Comparison:
    """Every plan over the same history, cheapest first (ties by name)."""
    if not plans:
        raise ConfigError("compare needs at least one plan (rota cost compare --plan FILE)")
    names = [p.name for p in plans]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"two plans are named {duplicate!r}; give each plan its own name")
    history = list(records)
    ranked = sorted(
        (evaluate(p, history, table, window=window) for p in plans), key=lambda r: (r.total, r.name)
    )
    complete = next((r for r in ranked if not r.dropped), None)
    return Comparison(tuple(ranked), ranked[0], complete)


def month_shares(start: datetime, end: datetime) -> dict[str, Decimal]:
    """The fraction of each UTC calendar month that [start, end) covers."""
    shares: dict[str, Decimal] = {}
    month = datetime(start.year, start.month, 1, tzinfo=UTC)
    while month < end:
        following = _next_month(month)
        covered = min(end, following) - max(start, month)
        shares[f"{month:%Y-%m}"] = _ratio(covered, following - month)
        month = following
    return shares


# -- the bill -----------------------------------------------------------------------------


class _Bill:
    """Running totals while a history is replayed; per month and per day for reports."""

    def __init__(self) -> None:
        self.parts: dict[str, Decimal] = defaultdict(Decimal)
        self.monthly: dict[str, Decimal] = defaultdict(Decimal)
        self.daily: dict[date, Decimal] = defaultdict(Decimal)
        self.dropped: list[CappedRun] = []
        self.overage_runs: list[CappedRun] = []

    def add(self, run: PricedRun, **amounts: Decimal) -> None:
        """Add `tokens=`, `sessions=`, `compute=` or `overage=` USD for `run`."""
        for part, value in amounts.items():
            self.parts[part] += value
        amount = sum(amounts.values(), Decimal(0))
        started = run.record.started_at
        self.monthly[f"{started:%Y-%m}"] += amount
        self.daily[started.date()] += amount

    def add_fee(self, month: str, amount: Decimal) -> None:
        self.parts["fees"] += amount
        self.monthly[month] += amount

    def breakdown(self) -> Breakdown:
        return Breakdown(**self.parts)


def _metered(plan: ApiPlan | SessionPlan, run: PricedRun) -> tuple[Decimal, Decimal]:
    """(tokens, sessions) USD of one run under a pay-per-use plan."""
    if isinstance(plan, ApiPlan) or not run.record.uses_ai:
        return run.tokens_usd, Decimal(0)
    billed = max(run.record.session_seconds, plan.min_session_seconds)
    return run.tokens_usd, billed * plan.session_usd_per_hour / HOUR


def _subscription(
    plan: SubscriptionPlan, runs: Sequence[PricedRun], months: dict[str, Decimal], bill: _Bill
) -> None:
    used: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (limit, period) -> used
    for run in runs:
        if not run.record.uses_ai:
            continue
        usage = _usage_of(run)
        periods = _periods(run.record.started_at)
        limits = _limits(plan, months, periods)
        full = next((lim for lim, size in limits if used[lim, periods[lim]] >= size), None)
        if full is None:
            for limit, amount in usage.items():
                used[limit, periods[limit]] += amount
            continue
        capped = CappedRun(run.record.run_id, run.record.name, run.record.started_at, full)
        if plan.over_cap == "drop":
            bill.dropped.append(capped)
            continue
        bill.overage_runs.append(capped)
        bill.add(run, overage=plan.overage_per_run + _overage_tokens(plan, run))


def _limits(
    plan: SubscriptionPlan, months: dict[str, Decimal], periods: dict[str, str]
) -> list[tuple[str, Decimal]]:
    """(limit, size) of every limit the plan sets, the shortest period first; monthly
    allowances prorated to the window's share of the run's month."""
    share = months[periods["included_runs"]]
    limits = [
        ("max_runs_per_hour", plan.max_runs_per_hour, Decimal(1)),
        ("max_runs_per_day", plan.max_runs_per_day, Decimal(1)),
        ("included_runs", plan.included_runs, share),
        ("included_tokens", plan.included_tokens, share),
        ("included_usd", plan.included_usd, share),
    ]
    return [(name, Decimal(size) * scale) for name, size, scale in limits if size is not None]


def _periods(started: datetime) -> dict[str, str]:
    month = f"{started:%Y-%m}"
    return {
        "max_runs_per_hour": f"{started:%Y-%m-%dT%H}",
        "max_runs_per_day": f"{started:%Y-%m-%d}",
        "included_runs": month,
        "included_tokens": month,
        "included_usd": month,
    }


def _usage_of(run: PricedRun) -> dict[str, Decimal]:
    one = Decimal(1)
    return {
        "max_runs_per_hour": one,
        "max_runs_per_day": one,
        "included_runs": one,
        "included_tokens": Decimal(run.record.tokens),
        "included_usd": run.tokens_usd,
    }


def _overage_tokens(plan: SubscriptionPlan, run: PricedRun) -> Decimal:
    if plan.overage_usd_per_mtok is None:
        return run.tokens_usd
    return Decimal(run.record.tokens) * plan.overage_usd_per_mtok / MILLION


# -- time ---------------------------------------------------------------------------------


def _window(runs: Sequence[PricedRun], window: Window | None) -> Window:
    if window is None:
        if not runs:
            raise ConfigError("no runs to bill: pass window=(start, end) for an empty history")
        first, last = runs[0].record.started_at, runs[-1].record.started_at
        start = datetime.combine(first.date(), time(), UTC)
        return start, datetime.combine(last.date() + timedelta(days=1), time(), UTC)
    start, end = window
    if start.tzinfo is None or end.tzinfo is None or not start < end:
        raise ConfigError(f"window must be two aware datetimes, start < end, got {window}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    for run in runs:
        if not start <= run.record.started_at < end:
            raise ConfigError(
                f"run {run.record.run_id} started at {run.record.started_at.isoformat()}, "
                f"outside the window {start.isoformat()} .. {end.isoformat()}"
            )
    return start, end


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _ratio(part: timedelta, whole: timedelta) -> Decimal:
    unit = timedelta(microseconds=1)
    return Decimal(part // unit) / Decimal(whole // unit)


def _trend(
    runs: Sequence[PricedRun], daily: dict[date, Decimal], days: int
) -> tuple[Forecast | None, str | None]:
    """The forecast of the metered daily costs, fitted on the history's first to last day
    with runs (not the window: days before the first run are not history), or why not."""
    if not runs:
        return None, NO_RUNS
    first, last = runs[0].record.started_at.date(), runs[-1].record.started_at.date()
    try:
        return forecast_series(daily, start=first, end=last, days=days), None
    except ShortHistory as exc:
        return None, str(exc)


def _with_fee(trend: Forecast, fee_ahead: Decimal) -> Forecast:
    """The trend of metered costs plus the fee for the forecast's days, spread evenly: the
    fee is certain, so it moves both ends of the interval too."""
    per_day = fee_ahead / trend.days
    daily = tuple(day + per_day for day in trend.daily)
    total = sum(daily, Decimal(0))  # the fee spread over the days may round a hair off it
    low, high = trend.low + fee_ahead, trend.high + fee_ahead
    return replace(trend, daily=daily, low=min(low, total), high=max(high, total))
