"""Model prices: what a model's tokens cost, at the time they were used.

A `PriceTable` answers "what did `provider:model` cost per million tokens at time T?" from,
in order: an explicit `price=` (an agent's own), the user's overrides (each effective from a
date, so a price change never reprices old runs), then the bundled genai-prices data
(`rota.cost.catalog`). Nothing found is an `UnknownPrice` error, never a silent zero: a
budget checked against a zero price would never stop anything.

Money is `decimal.Decimal` throughout; float sums drift by cents over a month of runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownPrice
from ..model import TokenCounts
from . import catalog
from .files import read_settings
from .price import CacheTTL, Price
from .price import PriceOverride as PriceOverride  # defined beside Price; its name here too
from .price import split_model as split_model


class PriceTable:
    """Resolves `provider:model` to a Price at a time. See the module docstring."""

    def __init__(self, overrides: Iterable[PriceOverride] = ()) -> None:
        self._overrides: dict[str, list[PriceOverride]] = {}
        for override in overrides:
            split_model(override.model)
            self._overrides.setdefault(override.model, []).append(override)
        for entries in self._overrides.values():
            entries.sort(key=lambda o: o.effective)

    @classmethod
    def from_config(cls, data: Mapping[str, Any], source: str = "price settings") -> PriceTable:
        """From a `{"prices": [{model, input, output, ..., effective}, ...]}` table."""
        # The file's pydantic models are built only when a prices file is read.
        from .overrides import parse_overrides  # noqa: PLC0415  # heavy: pydantic models

        return cls(parse_overrides(data, source))

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        return cls.from_config(read_settings(path), str(path))

    def resolve(
        self, model: str, at: datetime, *, price: Price | None = None, simulates: str | None = None
    ) -> Price:
        """The price of `model` for usage at `at` (an aware datetime). `price` (an agent's
        explicit one) wins; `simulates` prices a scripted model as the real one it stands for."""
        if price is not None:
            return price
        return self._resolve(model, _utc(at), simulates, seen=())

    def _resolve(
        self, model: str, at: datetime, simulates: str | None, seen: tuple[str, ...]
    ) -> Price:
        provider, name = split_model(model)
        if model in seen:
            raise ConfigError(
                f"price overrides simulate in a circle: {' -> '.join((*seen, model))}"
            )
        override = self._override(model, at)
        if override is not None and override.price is not None:
            return override.price
        target = simulates or (override.simulates if override is not None else None)
        if target is not None:
            found = self._resolve(target, at, None, (*seen, model))
            return replace(found, source=f"{target} (simulated by {model})")
        try:
            return _catalog_price(model, provider, name, at)
        except UnknownPrice as exc:
            later = self._overrides.get(model)
            if not later:
                raise
            start = later[0].effective.isoformat()
            raise UnknownPrice(model, f"{exc.reason}, and its overrides start on {start}") from None

    def cost(
        self,
        model: str,
        usage: TokenCounts,
        at: datetime,
        *,
        cache_ttl: CacheTTL = "5m",
        batch: bool = False,
    ) -> Decimal:
        return self.resolve(model, at).cost(usage, cache_ttl=cache_ttl, batch=batch)

    def _override(self, model: str, at: datetime) -> PriceOverride | None:
        found = None
        for override in self._overrides.get(model, ()):
            if override.effective <= at.date():
                found = override  # sorted: the newest effective one wins
        return found


def _catalog_price(model: str, provider: str, name: str, at: datetime) -> Price:
    if provider == "openai-compatible":
        raise UnknownPrice(model, "a self-hosted or third-party server has no list price")
    if provider == "scripted":
        raise UnknownPrice(
            model,
            "a scripted model is simulated; price it explicitly, or give its override "
            "simulates = 'anthropic:...' to price it as the model it stands for",
        )
    found = catalog.lookup(catalog.PROVIDER_IDS[provider], name, at)
    if found is None:
        raise UnknownPrice(
            model, f"genai-prices {catalog.version()} (bundled data) has no token price for it"
        )
    return found


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ConfigError(f"prices are looked up at an aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)
