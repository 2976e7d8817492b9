"""The pure parts of metering and budgets: prices kept as JSON with the usage they billed,
picodollars, a call's worst case, budget periods, and pricing a recorded history."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from rota import Budget
from rota.agents.types import Usage
from rota.cost import Price, PriceOverride
from rota.cost.budgets import SharedBudget, worst_cost
from rota.cost.history import history_table
from rota.cost.pricing import (
    SIMULATED,
    from_pusd,
    model_price,
    price_from_json,
    price_to_json,
    to_pusd,
)
from rota.errors import UnknownPrice

NOW = datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)


def test_a_price_survives_its_json_with_tiers_batch_rates_and_source() -> None:
    long = Price(Decimal(6), Decimal("22.5"), cache_read=Decimal("0.6"))
    price = Price(
        Decimal(3),
        Decimal(15),
        cache_write_5m=Decimal("3.75"),
        cache_read=Decimal("0.3"),
        tiers=((200_000, long),),
        batch=Price(Decimal("1.5"), Decimal("7.5")),
        source="genai-prices 0.2.3: anthropic/claude-sonnet-4-5",
    )
    back = price_from_json(price_to_json(price))
    assert back == price and back.source == price.source
    usage = Usage(input_tokens=250_000, output_tokens=10)
    assert back.cost(usage) == price.cost(usage) == Decimal("1.500225")  # the long tier


def test_picodollars_are_exact_for_rates_with_six_decimals() -> None:
    one_token = Price(Decimal("0.075"), Decimal(0)).cost(Usage(input_tokens=1))
    assert to_pusd(one_token) == 75_000  # $0.000000075
    assert from_pusd(to_pusd(Decimal("20.01"))) == Decimal("20.01")
    assert to_pusd(Decimal("0.0000000000005")) == 0  # half a picodollar: half-even rounding


def test_the_worst_case_prices_every_prompt_token_at_the_dearest_prompt_rate() -> None:
    price = Price(
        Decimal(3), Decimal(15), cache_write_5m=Decimal("3.75"), cache_write_1h=Decimal(6)
    )
    # 1000 prompt tokens at the 1-hour cache write rate ($6) + 200 output at $15
    assert worst_cost(price, 1000, 200) == Decimal("0.009")
    cheap_cache = Price(Decimal(2), Decimal(8), cache_read=Decimal("0.5"))
    assert worst_cost(cheap_cache, 1000, 100) == Decimal("0.0028")  # plain input is dearest


def test_a_scripted_model_without_a_price_is_simulated_and_others_are_unknown() -> None:
    assert model_price("scripted:demo", NOW) is SIMULATED
    assert model_price("scripted:demo", NOW, price=Price(1, 2)) == Price(1, 2)
    with pytest.raises(UnknownPrice, match="a self-hosted or third-party server has no list"):
        model_price("openai-compatible:llama3", NOW)


def test_shared_budget_periods_are_utc_days_and_calendar_months() -> None:
    daily = SharedBudget("agent", "a", "day", Budget(usd=5))
    charge = daily.charge(NOW.timestamp())
    assert (charge.key, charge.period, charge.limit_pusd) == ("agent:a", "2026-02-28", 5 * 10**12)
    assert charge.end - charge.start == 86_400 and charge.start <= NOW.timestamp() < charge.end
    monthly = SharedBudget("principal", "svc", "month", Budget(requests=3))
    feb = monthly.charge(NOW.timestamp())
    assert (feb.period, feb.end - feb.start, feb.limit_requests) == ("2026-02", 28 * 86_400, 3)
    assert datetime.fromtimestamp(feb.end, UTC) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_history_prices_models_without_a_list_price_as_they_were_recorded() -> None:
    first = price_to_json(Price(1, 2))
    later = price_to_json(Price(3, 4))
    mar1 = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    mar9 = datetime(2026, 3, 9, 12, tzinfo=UTC).timestamp()
    sonnet = price_to_json(Price(99, 99))
    table = history_table(
        [],
        [
            ("scripted:demo", first, mar1),
            ("scripted:demo", later, mar9),
            ("anthropic:claude-sonnet-4-5", sonnet, mar1),  # has a list price: that wins
        ],
    )
    usage = Usage(input_tokens=100_000)  # under the long-context tier of 200,000
    assert table.cost("scripted:demo", usage, datetime(2026, 2, 1, tzinfo=UTC)) == Decimal("0.1")
    assert table.cost("scripted:demo", usage, datetime(2026, 3, 9, tzinfo=UTC)) == Decimal("0.3")
    assert table.cost("anthropic:claude-sonnet-4-5", usage, NOW) == Decimal("0.3")  # $3 list
    override = PriceOverride("scripted:demo", Price(7, 7), date.min)
    overridden = history_table([override], [("scripted:demo", first, mar1)])
    # The user's override prices it: recorded prices are only the fallback.
    assert overridden.cost("scripted:demo", usage, NOW) == Decimal("0.7")
