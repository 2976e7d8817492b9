"""A model's price: USD per million tokens of each kind, and what usage costs at it; and the
user's override of a model's price from a date on.

A leaf of `rota.cost`: the price table (`rota.cost.prices`), the bundled list prices
(`rota.cost.catalog`) and a prices file (`rota.cost.overrides`) build these records. Money
is `decimal.Decimal` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from ..errors import ConfigError
from ..model import PROVIDERS, TokenCounts

CacheTTL = Literal["5m", "1h"]
MILLION = Decimal(1_000_000)


def as_decimal(value: Any, what: str) -> Decimal:
    """A number as Decimal, through its decimal text (so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return result


@dataclass(frozen=True)
class Price:
    """USD per million tokens, one rate per kind of token in `TokenCounts`.

    Cache rates left out cost what plain input costs (as genai-prices does: cached tokens
    are prompt tokens), and a 1-hour cache write costs a 5-minute one unless given.
    `batch_discount` is the fraction taken off every rate for batch API usage; `batch`
    holds exact batch rates instead when a provider discounts rates unevenly.
    `tiers` are (prompt tokens per request, rates): above that prompt size the tier's
    rates apply to all tokens of the request (providers' "long context" pricing).
    """

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None
    cache_read: Decimal | None = None
    batch_discount: Decimal = Decimal(0)
    tiers: tuple[tuple[int, Price], ...] = ()
    batch: Price | None = None
    source: str = field(default="explicit", compare=False)

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read"):
            value = getattr(self, name)
            if value is None:
                continue
            rate = as_decimal(value, f"price {name}")
            if rate < 0:
                raise ConfigError(f"price {name} must be >= 0 USD per million tokens, got {value}")
            object.__setattr__(self, name, rate)
        # Fill the defaults once so every reader sees five plain rates.
        if self.cache_write_5m is None:
            object.__setattr__(self, "cache_write_5m", self.input)
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", self.cache_write_5m)
        if self.cache_read is None:
            object.__setattr__(self, "cache_read", self.input)
        discount = as_decimal(self.batch_discount, "price batch_discount")
        if not 0 <= discount <= 1:
            raise ConfigError(f"price batch_discount must be a fraction 0..1, got {discount}")
        object.__setattr__(self, "batch_discount", discount)
        object.__setattr__(self, "tiers", tuple(sorted(self.tiers, key=lambda t: t[0])))

    def cost(
        self, usage: TokenCounts, *, cache_ttl: CacheTTL = "5m", batch: bool = False
    ) -> Decimal:
        """USD for `usage`. `reasoning_tokens` are part of `output_tokens` and not added
        again. With tiers, the prompt size is per request: exact for one call, the average
        prompt for usage summed over several."""
        if batch and self.batch is not None:
            return self.batch.cost(usage, cache_ttl=cache_ttl)
        rates = self._tier(usage)
        write = rates.cache_write_1h if cache_ttl == "1h" else rates.cache_write_5m
        assert write is not None and rates.cache_read is not None  # filled in __post_init__
        total = (
            usage.input_tokens * rates.input
            + usage.output_tokens * rates.output
            + usage.cache_write_tokens * write
            + usage.cache_read_tokens * rates.cache_read
        ) / MILLION
        return total * (1 - self.batch_discount) if batch else total

    def _tier(self, usage: TokenCounts) -> Price:
        prompt = usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens
        requests = max(usage.requests, 1)
        chosen = self
        for above, rates in self.tiers:
            if prompt > above * requests:
                chosen = rates
        return chosen


@dataclass(frozen=True)
class PriceOverride:
    """The user's price for one model from `effective` (a UTC date) on; or, with
    `simulates`, "price this model as that one" (for scripted models standing in for a
    real one)."""

    model: str
    price: Price | None = None
    effective: date = date.min
    simulates: str | None = None


def split_model(model: str) -> tuple[str, str]:
    """`provider:model` as (provider, model); a ConfigError says what is wrong with it."""
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(f"model {model!r} must be written provider:model, e.g. 'openai:gpt-4o'")
    if provider not in PROVIDERS:
        raise ConfigError(
            f"model {model!r}: no provider {provider!r} (known: {', '.join(PROVIDERS)})"
        )
    return provider, name
