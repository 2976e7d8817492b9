"""A price catalogue the tests own, in genai-prices' own types.

rota reads list prices from the genai-prices package's bundled data. That data changes with
every release, so a test that asserted "Claude Sonnet 4 costs $3" would break on a fresh
install that got a newer release. Tests therefore run against this small, fixed catalogue
(installed by the autouse fixture in conftest.py) labelled with a fixed version text; only
tests marked `bundled_prices` read the installed package's data, and those compare rota with
genai-prices' own calculation instead of with figures.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ClauseEquals,
    ClauseOr,
    ClauseStartsWith,
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    PriceVariant,
    Provider,
    StartDateConstraint,
    Tier,
    TieredPrices,
)

VERSION = "pinned-test-data"
BATCH = {"processing": "batch"}


def _tiered(base: str, above_200k: str) -> TieredPrices:
    return TieredPrices(base=D(base), tiers=[Tier(start=200_000, price=D(above_200k))])


def _starts(*prefixes: str) -> ClauseOr:
    return ClauseOr(or_=[ClauseStartsWith(starts_with=p) for p in prefixes])


SONNET_4_5 = ModelInfo(
    id="claude-sonnet-4-5",
    match=_starts("claude-sonnet-4-5"),
    prices=ModelPrice(
        input_mtok=_tiered("3", "6"),
        output_mtok=_tiered("15", "22.5"),
        cache_write_mtok=_tiered("3.75", "7.5"),
        cache_write_1h_mtok=_tiered("6", "12"),
        cache_read_mtok=_tiered("0.3", "0.6"),
    ),
    price_variants=[
        PriceVariant(
            when=BATCH,
            prices=ModelPrice(
                input_mtok=_tiered("1.5", "3"),
                output_mtok=_tiered("7.5", "11.25"),
                cache_write_mtok=_tiered("1.875", "3.75"),
                cache_read_mtok=_tiered("0.15", "0.3"),
            ),
        )
    ],
)
SONNET_4 = ModelInfo(
    id="claude-sonnet-4",
    match=_starts("claude-sonnet-4"),
    prices=ModelPrice(
        input_mtok=D(3),
        output_mtok=D(15),
        cache_write_mtok=D("3.75"),
        cache_write_1h_mtok=D(6),
        cache_read_mtok=D("0.3"),
    ),
)
HAIKU_4_5 = ModelInfo(
    id="claude-haiku-4-5",
    match=_starts("claude-haiku-4-5"),
    prices=ModelPrice(
        input_mtok=D(1),
        output_mtok=D(5),
        cache_write_mtok=D("1.25"),
        cache_write_1h_mtok=D(2),
        cache_read_mtok=D("0.1"),
    ),
)
GPT_4O = ModelInfo(
    id="gpt-4o",
    match=ClauseOr(or_=[ClauseEquals(equals="gpt-4o"), ClauseStartsWith(starts_with="gpt-4o-")]),
    prices=ModelPrice(input_mtok=D("2.5"), output_mtok=D(10), cache_read_mtok=D("1.25")),
)
O3 = ModelInfo(  # a price cut on a date: both prices stay in the data
    id="o3",
    match=ClauseEquals(equals="o3"),
    prices=[
        ConditionalPrice(prices=ModelPrice(input_mtok=D(10), output_mtok=D(40))),
        ConditionalPrice(
            constraint=StartDateConstraint(start_date=date(2025, 6, 10)),
            prices=ModelPrice(input_mtok=D(2), output_mtok=D(8)),
        ),
    ],
)
WHISPER = ModelInfo(  # priced per audio minute only: no token price
    id="whisper-1",
    match=ClauseEquals(equals="whisper-1"),
    prices=ModelPrice(),
)

SNAPSHOT = DataSnapshot(
    providers=[
        # The first match wins, so the longer prefixes come first.
        Provider(
            id="anthropic",
            name="Anthropic",
            api_pattern=r"https://api\.anthropic\.com",
            models=[SONNET_4_5, SONNET_4, HAIKU_4_5],
        ),
        Provider(
            id="openai",
            name="OpenAI",
            api_pattern=r"https://api\.openai\.com",
            models=[GPT_4O, O3, WHISPER],
        ),
    ],
    from_auto_update=False,
)
