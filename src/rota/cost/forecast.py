"""Next month's cost from the trend of the daily cost so far.

The method, on purpose simple enough to check by hand: take the cost of every UTC day in the
history (days without runs count as zero), fit a straight line y = a + b·x by least
squares (x = 0 for the first day), extend it over the next `days` days, clamp each projected
day at zero (a falling trend cannot earn money back) and add them up. It is a trend, not a
simulation: it does not know about caps, allowances or price changes to come.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from ..errors import ConfigError
from .prices import PriceTable, as_decimal
from .records import RunCost, compute_usd, price_history


@dataclass(frozen=True)
class Forecast:
    """`total` USD over the next `days` days; `daily` the projected days; `slope` (USD per
    day, per day) and `intercept` (USD on the first day of the history) the fitted line
    over `basis_days` days of history."""

    days: int
    basis_days: int
    slope: Decimal
    intercept: Decimal
    daily: tuple[Decimal, ...]

    @property
    def total(self) -> Decimal:
        return sum(self.daily, Decimal(0))


def forecast_series(
    daily: Mapping[date, Decimal], *, start: date, end: date, days: int = 30
) -> Forecast:
    """Project `daily` costs (for the UTC days `start` .. `end`, both included) `days` ahead."""
    if days < 1:
        raise ConfigError(f"a forecast needs days >= 1, got {days}")
    if end < start:
        raise ConfigError(f"a forecast needs start <= end, got {start} .. {end}")
    n = (end - start).days + 1
    ys = [daily.get(start + timedelta(days=i), Decimal(0)) for i in range(n)]
    intercept, slope = _least_squares(ys)
    projected = tuple(max(Decimal(0), intercept + slope * x) for x in range(n, n + days))
    return Forecast(days, n, slope, intercept, projected)


def forecast(
    records: Iterable[RunCost],
    table: PriceTable,
    *,
    days: int = 30,
    compute_usd_per_hour: Decimal | int = 0,
    start: date | None = None,
    end: date | None = None,
) -> Forecast:
    """The list-price cost (tokens, plus compute at `compute_usd_per_hour`) of the next
    `days` days from the history's trend. `start`/`end` widen the history to days without
    runs (default: the first and last day with a run)."""
    runs = price_history(records, table)
    if not runs:
        raise ConfigError("a forecast needs at least one run in the history")
    rate = as_decimal(compute_usd_per_hour, "compute_usd_per_hour")
    daily: dict[date, Decimal] = {}
    for run in runs:
        day = run.record.started_at.date()
        daily[day] = daily.get(day, Decimal(0)) + run.tokens_usd + compute_usd(run.record, rate)
    first = start or min(daily)
    last = end or max(daily)
    return forecast_series(daily, start=first, end=last, days=days)


def _least_squares(ys: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(a, b) of the line a + b·x closest to ys[x] in squared error; flat for one point."""
    n = len(ys)
    mean_x = Decimal(n - 1) / 2
    mean_y = sum(ys, Decimal(0)) / n
    spread = sum(((x - mean_x) ** 2 for x in range(n)), Decimal(0))
    if spread == 0:
        return mean_y, Decimal(0)
    slope = sum(((x - mean_x) * (y - mean_y) for x, y in enumerate(ys)), Decimal(0)) / spread
    return mean_y - slope * mean_x, slope
