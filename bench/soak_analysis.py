"""The soak's verdicts, pure functions of the samples (tests/unit/test_soak_analysis.py).

A series passes when it shows no upward trend: its last third, on average, is not above its
first third by more than a tolerance (relative to the first third, plus an absolute slack for
series that sit near zero). The slope (least squares, per minute) is reported beside it: a
leak shows as a steady positive slope and a last third above the first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trend:
    """How one series moved: first- and last-third means, slope per minute, verdict."""

    name: str
    first: float
    last: float
    slope_per_min: float
    ok: bool

    def describe(self, unit: str) -> str:
        verdict = "ok" if self.ok else "RISING"
        return (
            f"{self.name}: first third {self.first:.2f} {unit}, last third {self.last:.2f} {unit}, "
            f"slope {self.slope_per_min:+.3f} {unit}/min: {verdict}"
        )


def thirds(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The first and last thirds of a series (at least one value each)."""
    if not values:
        raise ValueError("no samples: a verdict needs at least one")
    size = max(1, len(values) // 3)
    return list(values[:size]), list(values[-size:])


def slope_per_minute(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of values over time, per minute (0 for fewer than two points)."""
    if len(times_s) != len(values):
        raise ValueError(f"{len(times_s)} times for {len(values)} values")
    if len(values) < 2:
        return 0.0
    mean_t = statistics.fmean(times_s)
    mean_v = statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times_s)
    if spread == 0:
        return 0.0
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in zip(times_s, values, strict=True))
    return covariance / spread * 60.0


def trend(
    name: str,
    times_s: Sequence[float],
    values: Sequence[float],
    *,
    relative: float,
    absolute: float,
) -> Trend:
    """No upward trend: mean(last third) <= mean(first third) * (1 + relative) + absolute."""
    first, last = thirds(values)
    first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
    ok = last_mean <= first_mean * (1 + relative) + absolute
    return Trend(name, first_mean, last_mean, slope_per_minute(times_s, values), ok)


def after_warmup(
    times_s: Sequence[float], values: Sequence[float], warmup_s: float
) -> tuple[list[float], list[float]]:
    """The samples taken warmup_s or more after the first one (all of them if that leaves
    fewer than three)."""
    if not times_s:
        return [], []
    start = times_s[0] + warmup_s
    kept = [(t, v) for t, v in zip(times_s, values, strict=True) if t >= start]
    if len(kept) < 3:
        kept = list(zip(times_s, values, strict=True))
    return [t for t, _ in kept], [v for _, v in kept]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in [0, 1]); NaN for no values."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} is not between 0 and 1")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
