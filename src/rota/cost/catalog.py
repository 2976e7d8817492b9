"""List prices from the `genai-prices` package, bundled data only.

genai-prices ships a price snapshot inside the package and can also replace it at runtime
with one downloaded from GitHub (`UpdatePrices`, opt-in). Its module-level `calc_price`
reads a process-wide snapshot that any other library in the process (Logfire, pydantic-ai)
may have swapped for a downloaded one. rota never starts the updater and never reads that
shared snapshot: it builds its own `DataSnapshot` over the bundled `genai_prices.data`, so a
run's cost depends only on the installed package version (recorded in `Price.source`).

Its prices are versioned by date (`ConditionalPrice` with a start date: the last one active
at the request time wins) and may be tiered by prompt size ("cliff" tiers: above the
threshold every token of the request pays the tier rate). Both map onto `Price` below;
its batch rates are a request variant (`{"processing": "batch"}`), which we turn into
`Price.batch`. Rates it has that rota does not meter (web searches, audio, images) are
left out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from .price import Price

# rota's provider names -> genai-prices provider ids (compatible servers and scripted
# models have no list price at all and never reach this module).
PROVIDER_IDS = {"anthropic": "anthropic", "openai": "openai", "openai-responses": "openai"}
BATCH = {"processing": "batch"}


@cache
def version() -> str:
    # Asked for with a list price, when the data is loaded: its version comes with it, and a
    # process that prices nothing does not load importlib.metadata (email, zipfile, csv).
    from genai_prices import __version__  # noqa: PLC0415  # heavy: genai_prices

    return str(__version__)


@cache
def _snapshot() -> Any:
    from genai_prices import data  # noqa: PLC0415  # heavy: 30,000 lines of price data
    from genai_prices.data_snapshot import DataSnapshot  # noqa: PLC0415  # heavy: genai_prices

    return DataSnapshot(providers=data.providers, from_auto_update=False)


def lookup(provider_id: str, name: str, at: datetime) -> Price | None:
    """The bundled list price of `name` at `at`, or None when the data does not know it or
    has no per-token input and output rates for it (audio, moderation models)."""
    try:
        provider, info = _snapshot().find_provider_model(name, None, provider_id, None)
    except LookupError:
        return None
    source = f"genai-prices {version()}: {provider.id}/{info.id}"
    standard = _to_price(info.get_prices(at), source)
    if standard is None:
        return None
    native = any(info is model for model in provider.models)  # batch rates are per provider
    if native and _has_batch(info, at):
        batch = _to_price(info.get_prices(at, BATCH), source + " (batch)")
        if batch is not None and batch != standard:
            return replace(standard, batch=batch)
    return standard


def _has_batch(info: Any, at: datetime) -> bool:
    return any(
        variant.when == BATCH and (variant.constraint is None or variant.constraint.active(at))
        for variant in info.price_variants or ()
    )


def _to_price(model_price: Any, source: str) -> Price | None:
    raw = {
        "input": model_price.input_mtok,
        "output": model_price.output_mtok,
        "cache_read": model_price.cache_read_mtok,
        # genai-prices: an unpriced 5m/1h write falls back to the generic cache write rate.
        "cache_write_5m": model_price.cache_write_5m_mtok or model_price.cache_write_mtok,
        "cache_write_1h": model_price.cache_write_1h_mtok or model_price.cache_write_mtok,
    }
    if raw["input"] is None or raw["output"] is None:
        return None
    thresholds = sorted({tier.start for value in raw.values() for tier in _tiers(value)})
    tiers = tuple((start, _rates(raw, start, source)) for start in thresholds)
    return replace(_rates(raw, -1, source), tiers=tiers)


def _rates(raw: dict[str, Any], above: int, source: str) -> Price:
    """The flat rates for a prompt of `above + 1` tokens."""
    rate = {key: _rate_above(value, above) for key, value in raw.items()}
    assert rate["input"] is not None and rate["output"] is not None
    return Price(
        input=rate["input"],
        output=rate["output"],
        cache_write_5m=rate["cache_write_5m"],
        cache_write_1h=rate["cache_write_1h"],
        cache_read=rate["cache_read"],
        source=source,
    )


def _tiers(value: Any) -> list[Any]:
    return list(getattr(value, "tiers", None) or ())


def _rate_above(value: Any, start: int) -> Decimal | None:
    """The rate for a prompt of `start + 1` tokens (a tier applies strictly above its start)."""
    if value is None or isinstance(value, Decimal):
        return value
    rate: Decimal = value.base
    for tier in _tiers(value):
        if start >= tier.start:
            rate = tier.price
    return rate
