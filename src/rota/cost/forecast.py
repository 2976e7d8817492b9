"""The next days' cost from the trend of the daily cost so far.

The method, on purpose simple enough to check by hand: take the cost of every UTC day the
history covers, from its first day with runs to its last (days between without runs count
as zero; days before the first run or after the last are not history, whatever window it
was read with), fit a straight line y = a + b·x by least squares (x = 0 for the first day),
extend it over the next `days` days, clamp each projected day at zero (a falling trend
cannot earn money back) and add them up.

The interval around that total is the 95% prediction interval of a sum of `days` future
days under the fitted line, from the residuals of the fit (Student's t with n - 2 degrees
of freedom), clamped at zero, and widened to the total where clamping the days raised it.
A trend needs at least MIN_BASIS_DAYS days: fewer are refused (ShortHistory). It is a
trend, not a simulation: it does not know about caps, allowances or price changes to come.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from ..errors import ConfigError
from .price import as_decimal
from .prices import PriceTable
from .records import RunCost, compute_usd, price_history

NO_RUNS = "no forecast: there are no runs in the history"
MIN_BASIS_DAYS = 3  # a line through 2 points fits exactly: its residuals say nothing
# The 97.5% quantile of Student's t by degrees of freedom (rounded up at the 4th decimal);
# between two rows the smaller degrees of freedom is used, which only widens the interval.
_T975 = {
    1: "12.7063", 2: "4.3027", 3: "3.1825", 4: "2.7765", 5: "2.5706", 6: "2.4470",
    7: "2.3647", 8: "2.3061", 9: "2.2622", 10: "2.2282", 11: "2.2010", 12: "2.1789",
    13: "2.1604", 14: "2.1448", 15: "2.1315", 16: "2.1200", 17: "2.1099", 18: "2.1010",
    19: "2.0931", 20: "2.0860", 21: "2.0797", 22: "2.0739", 23: "2.0687", 24: "2.0639",
    25: "2.0596", 26: "2.0556", 27: "2.0519", 28: "2.0485", 29: "2.0453", 30: "2.0423",
    40: "2.0211", 60: "2.0003", 120: "1.9800",
}  # fmt: skip


class ShortHistory(ConfigError):
    """Too little history to extrapolate a trend from."""


@dataclass(frozen=True)
class Forecast:
    """`total` USD over the next `days` days (`daily`: the projected days), between `low`
    and `high` (the 95% prediction interval). Fitted on `basis_days` days of history, `first`
    to `last`: `intercept` USD on the first day, rising `slope` USD a day."""

    days: int
    basis_days: int
    first: date
    last: date
    slope: Decimal
    intercept: Decimal
    daily: tuple[Decimal, ...]
    low: Decimal
    high: Decimal

    @property
    def total(self) -> Decimal:
        return sum(self.daily, Decimal(0))


def forecast_series(
    daily: Mapping[date, Decimal], *, start: date, end: date, days: int = 30
) -> Forecast:
    """Project `daily` costs for the UTC days `start` .. `end` (both included; days missing
    from `daily` cost zero) `days` ahead. Callers pass the history's first and last day with
    runs: zero days added around them would bend the line (see the module docstring)."""
    if days < 1:
        raise ConfigError(f"a forecast needs days >= 1, got {days}")
    if end < start:
        raise ConfigError(f"a forecast needs start <= end, got {start} .. {end}")
    n = (end - start).days + 1
    if n < MIN_BASIS_DAYS:
        raise ShortHistory(
            f"no forecast: the history covers {n} day{'' if n == 1 else 's'} ({start} .. "
            f"{end}, from the first day with runs to the last); a trend needs at least "
            f"{MIN_BASIS_DAYS}"
        )
    ys = [daily.get(start + timedelta(days=i), Decimal(0)) for i in range(n)]
    intercept, slope = _least_squares(ys)
    line = [intercept + slope * x for x in range(n, n + days)]
    projected = tuple(max(Decimal(0), y) for y in line)
    total = sum(projected, Decimal(0))
    # The interval is the line's (costs below zero included), clamped at zero, and reaches
    # the point forecast where clamping the projected days raised it above the line's sum.
    around, margin = sum(line, Decimal(0)), _margin(ys, intercept, slope, days)
    return Forecast(
        days=days,
        basis_days=n,
        first=start,
        last=end,
        slope=slope,
        intercept=intercept,
        daily=projected,
        low=max(Decimal(0), min(total, around - margin)),
        high=max(total, around + margin),
    )


def forecast(
    records: Iterable[RunCost],
    table: PriceTable,
    *,
    days: int = 30,
    compute_usd_per_hour: Decimal | int = 0,
) -> Forecast:
    """The list-price cost (tokens, plus compute at `compute_usd_per_hour`) of the next
    `days` days from the trend of the history's first to last day with runs."""
    runs = price_history(records, table)
    if not runs:
        raise ShortHistory(NO_RUNS)
    rate = as_decimal(compute_usd_per_hour, "compute_usd_per_hour")
    daily: dict[date, Decimal] = {}
    for run in runs:
        day = run.record.started_at.date()
        daily[day] = daily.get(day, Decimal(0)) + run.tokens_usd + compute_usd(run.record, rate)
    return forecast_series(daily, start=min(daily), end=max(daily), days=days)


def _least_squares(ys: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(a, b) of the line a + b·x closest to ys[x] in squared error."""
    n = len(ys)
    mean_x = Decimal(n - 1) / 2
    mean_y = sum(ys, Decimal(0)) / n
    spread = _spread(n)
    slope = sum(((x - mean_x) * (y - mean_y) for x, y in enumerate(ys)), Decimal(0)) / spread
    return mean_y - slope * mean_x, slope


def _spread(n: int) -> Decimal:
    """Σ (x - mean x)² over x = 0 .. n-1."""
    mean_x = Decimal(n - 1) / 2
    return sum(((x - mean_x) ** 2 for x in range(n)), Decimal(0))


def _margin(ys: list[Decimal], intercept: Decimal, slope: Decimal, days: int) -> Decimal:
    """Half the width of the 95% prediction interval of the sum of the next `days` days.

    With s² the residual variance (n - 2 degrees of freedom), the sum's error has variance
    s² · (days + days² · (1/n + (mean future x - mean x)² / Σ(x - mean x)²)): the noise of
    each future day, and the uncertainty of the fitted line at the future days' mean."""
    n = len(ys)
    residuals = sum(((y - (intercept + slope * x)) ** 2 for x, y in enumerate(ys)), Decimal(0))
    variance = residuals / (n - 2)
    ahead = Decimal(n) + Decimal(days - 1) / 2  # the mean x of the projected days
    mean_x = Decimal(n - 1) / 2
    d = Decimal(days)
    spread = d + d * d * (1 / Decimal(n) + (ahead - mean_x) ** 2 / _spread(n))
    return _t975(n - 2) * (variance * spread).sqrt()


def _t975(freedom: int) -> Decimal:
    return Decimal(_T975[max(k for k in _T975 if k <= freedom)])
