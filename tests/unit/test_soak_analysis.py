"""The soak's verdicts (bench/soak_analysis.py) on made-up series: a flat, a noisy-flat, a
leaking and a growing-lag series, and the edge cases of the helpers."""

from __future__ import annotations

import math

import pytest
from bench.soak_analysis import after_warmup, percentile, slope_per_minute, thirds, trend

TIMES = [10.0 * i for i in range(60)]  # ten minutes, a sample every 10 s


def test_flat_series_passes_with_zero_slope() -> None:
    result = trend("rss", TIMES, [100.0] * 60, relative=0.03, absolute=2.0)
    assert result.ok
    assert result.first == result.last == 100.0
    assert result.slope_per_min == 0.0


def test_noise_around_a_level_passes() -> None:
    noisy = [100.0 + (1.5 if i % 2 else -1.5) for i in range(60)]
    result = trend("rss", TIMES, noisy, relative=0.03, absolute=2.0)
    assert result.ok
    assert abs(result.slope_per_min) < 0.1


def test_a_leak_of_one_mib_a_minute_fails() -> None:
    leaking = [100.0 + t / 60.0 for t in TIMES]
    result = trend("rss", TIMES, leaking, relative=0.03, absolute=2.0)
    assert not result.ok
    assert result.slope_per_min == pytest.approx(1.0)
    assert "RISING" in result.describe("MiB")


def test_lag_that_grows_fails_and_lag_that_recovers_passes() -> None:
    growing = [0.1 * i for i in range(60)]
    assert not trend("lag", TIMES, growing, relative=0.5, absolute=1.0).ok
    recovering = [5.0 if i < 20 else 0.2 for i in range(60)]  # a slow start, then steady
    assert trend("lag", TIMES, recovering, relative=0.5, absolute=1.0).ok


def test_thirds_and_slope_edge_cases() -> None:
    assert thirds([1.0, 2.0]) == ([1.0], [2.0])
    assert thirds([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == ([1.0, 2.0], [5.0, 6.0])
    with pytest.raises(ValueError, match="no samples"):
        thirds([])
    assert slope_per_minute([5.0], [1.0]) == 0.0
    assert slope_per_minute([1.0, 1.0], [1.0, 9.0]) == 0.0
    with pytest.raises(ValueError, match="2 times for 1 values"):
        slope_per_minute([1.0, 2.0], [1.0])


def test_after_warmup_drops_the_first_samples_unless_too_few_remain() -> None:
    times, values = after_warmup(TIMES, list(range(60)), 60.0)
    assert times[0] == 60.0
    assert values[0] == 6
    assert len(values) == 54
    short_t, short_v = after_warmup([0.0, 10.0, 20.0], [1.0, 2.0, 3.0], 60.0)
    assert short_v == [1.0, 2.0, 3.0]
    assert short_t == [0.0, 10.0, 20.0]
    assert after_warmup([], [], 60.0) == ([], [])


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.01) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="not between 0 and 1"):
        percentile(values, 1.5)
