"""The cost forecast is stable: it is fitted on the days the history covers (its first day
with runs to its last), whatever window the history was read with; it says what it was
fitted on and how uncertain it is (a 95% prediction interval from the fit's residuals); and
it refuses to extrapolate from fewer than 3 days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from rota.agents.types import Usage
from rota.cost import ApiPlan, PriceTable, RunCost, SubscriptionPlan, evaluate, forecast
from rota.cost.forecast import MIN_BASIS_DAYS, ShortHistory, forecast_series
from rota.cost.prices import Price, PriceOverride

TABLE = PriceTable([PriceOverride("scripted:bot", Price(input=1, output=1))])
D0 = date(2026, 3, 10)


def runs_costing(costs: list[str], first: date = D0) -> list[RunCost]:
    """One run a day from `first`, costing costs[i] dollars ($1 per million input tokens)."""
    return [
        RunCost(
            f"r{i}",
            "digest",
            "agent",
            datetime(first.year, first.month, first.day + i, 9, tzinfo=UTC),
            usage={"scripted:bot": Usage(input_tokens=int(Decimal(c) * 1_000_000))},
        )
        for i, c in enumerate(costs)
    ]


# -- a hand-computed example -------------------------------------------------------------------


def test_a_hand_computed_forecast_and_its_interval() -> None:
    # Days x = 0..4 cost 10, 12, 11, 13, 14: mean x 2, mean y 12, Sxx = 10,
    # Sxy = (-2)(-2) + (-1)(0) + 0 + (1)(1) + (2)(2) = 9: slope 0.9, intercept 12 - 1.8 = 10.2.
    # The next 2 days, x = 5 and 6: 14.7 + 15.6 = 30.3.
    # Residuals -0.2, 0.9, -1.0, 0.1, 0.2: s^2 = 1.9 / (5 - 2). The total of 2 future days
    # varies by s^2 * (2 + 2^2 * (1/5 + (5.5 - 2)^2 / 10)) = s^2 * 7.7; the 97.5% quantile
    # of Student's t with 3 degrees of freedom is 3.1825 (3.182446 rounded up).
    result = forecast(runs_costing(["10", "12", "11", "13", "14"]), TABLE, days=2)
    assert (result.slope, result.intercept, result.total) == (
        Decimal("0.9"),
        Decimal("10.2"),
        Decimal("30.3"),
    )
    assert result.daily == (Decimal("14.7"), Decimal("15.6"))
    margin = Decimal("3.1825") * (Decimal("1.9") / 3 * Decimal("7.7")).sqrt()
    assert abs(result.high - (Decimal("30.3") + margin)) < Decimal("1e-20")
    assert abs(result.low - (Decimal("30.3") - margin)) < Decimal("1e-20")
    assert round(result.low, 2) == Decimal("23.27") and round(result.high, 2) == Decimal("37.33")
    assert (result.basis_days, result.first, result.last) == (5, D0, date(2026, 3, 14))


def test_a_perfect_line_has_no_uncertainty() -> None:
    result = forecast(runs_costing([str(1 + 2 * x) for x in range(10)]), TABLE, days=30)
    # y = 1 + 2x fits exactly; x = 10..39: 30 + 2 * (10 + ... + 39) = 1500
    assert result.total == 1500 and result.low == result.high == 1500


# -- the interval -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "costs",
    [
        ["10", "12", "11", "13", "14"],
        ["5", "0", "9", "1", "0", "7"],  # noisy
        ["10", "9", "8"],  # falling: the projected days are clamped at zero
        ["0.1", "8", "0.2", "9"],  # the interval's lower end is clamped at zero
        ["3", "3", "3"],  # flat
    ],
)
def test_the_interval_contains_the_point_forecast_and_never_goes_below_zero(
    costs: list[str],
) -> None:
    result = forecast(runs_costing(costs), TABLE, days=30)
    assert 0 <= result.low <= result.total <= result.high
    assert all(day >= 0 for day in result.daily)


def test_the_lower_end_is_clamped_at_zero() -> None:
    result = forecast(runs_costing(["0.1", "8", "0.2", "9"]), TABLE, days=30)
    assert result.low == 0 < result.total < result.high


def test_a_plan_adds_its_fee_to_the_forecast_and_to_both_ends_of_the_interval() -> None:
    runs = runs_costing(["1", "2", "1", "3"])
    api = evaluate(ApiPlan(name="a"), runs, TABLE).forecast
    sub = evaluate(SubscriptionPlan(name="s", monthly_fee=Decimal(30)), runs, TABLE).forecast
    assert api is not None and sub is not None
    assert api.total > 0 and api.high > api.total  # a noisy history: an interval
    # Every run is covered by the fee: nothing metered, the fee for 30 days is certain.
    assert (sub.total, sub.low, sub.high) == (30, 30, 30)


# -- stability: the window the history was read with does not matter ---------------------------


def test_the_same_history_read_with_different_windows_forecasts_the_same() -> None:
    runs = runs_costing(["0.40", "0.55", "0.35", "0.60", "0.45"])  # 10-14 March: $2.35
    end = datetime(2026, 3, 20, tzinfo=UTC)
    windows = [
        (datetime(2026, 3, 10, tzinfo=UTC), end),  # from the first run
        (datetime(2026, 3, 1, tzinfo=UTC), end),  # --since 2026-03-01
        (datetime(2026, 1, 1, tzinfo=UTC), end),  # --since 2026-01-01
        (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC)),
    ]
    results = [evaluate(ApiPlan(name="a"), runs, TABLE, window=w).forecast for w in windows]
    assert all(r == results[0] for r in results)
    first = results[0]
    assert first is not None and (first.first, first.last, first.basis_days) == (
        D0,
        date(2026, 3, 14),
        5,
    )
    assert first == forecast(runs, TABLE)  # the plain list-price forecast agrees


def test_days_without_runs_inside_the_history_count_as_zero() -> None:
    runs = runs_costing(["2", "0", "2"])
    result = forecast([runs[0], runs[2]], TABLE, days=30)
    # 2, 0, 2 over three days: flat at the mean 4/3 -> 30 * 4/3 = 40
    assert result.slope == 0 and round(result.total, 3) == 40 and result.basis_days == 3


# -- too little history ----------------------------------------------------------------------


def test_fewer_than_three_days_of_history_is_refused_with_a_clear_message() -> None:
    two_days = runs_costing(["1", "2"])
    with pytest.raises(ShortHistory) as caught:
        forecast(two_days, TABLE)
    assert str(caught.value) == (
        "no forecast: the history covers 2 days (2026-03-10 .. 2026-03-11, from the first "
        "day with runs to the last); a trend needs at least 3"
    )
    assert MIN_BASIS_DAYS == 3


def test_a_plan_on_a_short_history_is_still_billed_without_a_forecast() -> None:
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    result = evaluate(ApiPlan(name="a"), runs_costing(["1", "2"]), TABLE, window=window)
    assert result.total == 3 and result.forecast is None
    assert result.forecast_note is not None
    assert result.forecast_note.startswith("no forecast: the history covers 2 days")


def test_a_history_without_runs_has_no_forecast() -> None:
    window = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    result = evaluate(ApiPlan(name="a"), [], TABLE, window=window)
    assert result.total == 0 and result.forecast is None
    assert result.forecast_note == "no forecast: there are no runs in the history"


def test_forecast_series_checks_its_arguments() -> None:
    daily = {D0: Decimal(1)}
    with pytest.raises(ShortHistory, match="covers 1 day "):
        forecast_series(daily, start=D0, end=D0)
    with pytest.raises(ValueError, match="days >= 1, got 0"):
        forecast_series(daily, start=D0, end=date(2026, 3, 12), days=0)
