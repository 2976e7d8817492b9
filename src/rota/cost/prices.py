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
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic

from ..errors import ConfigError, ConfigFileError, UnknownPrice
from ..model import PROVIDERS, TokenCounts
from . import catalog
from .files import read_settings, validate
from .price import CacheTTL, Price


@dataclass(frozen=True)
class PriceOverride:
    """The user's price for one model from `effective` (a UTC date) on; or, with
    `simulates`, "price this model as that one" (for scripted models standing in for a
    real one)."""

    model: str
    price: Price | None = None
    effective: date = date.min
    simulates: str | None = None


class PriceTable:
    """Resolves `provider:model` to a Price at a time. See the module docstring."""

    def __init__(self, overrides: Iterable[PriceOverride] = ()) -> None:
        self._overrides: dict[str, list[PriceOverride]] = {}
        for override in overrides:
            _split(override.model)
            self._overrides.setdefault(override.model, []).append(override)
        for entries in self._overrides.values():
            entries.sort(key=lambda o: o.effective)

    @classmethod
    def from_config(cls, data: Mapping[str, Any], source: str = "price settings") -> PriceTable:
        """From a `{"prices": [{model, input, output, ..., effective}, ...]}` table."""
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
        provider, name = _split(model)
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


def _split(model: str) -> tuple[str, str]:
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(f"model {model!r} must be written provider:model, e.g. 'openai:gpt-4o'")
    if provider not in PROVIDERS:
        raise ConfigError(
            f"model {model!r}: no provider {provider!r} (known: {', '.join(PROVIDERS)})"
        )
    return provider, name


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ConfigError(f"prices are looked up at an aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)


# -- the settings file boundary -----------------------------------------------------------

Rate = Annotated[Decimal, pydantic.Field(ge=0)]


class _OverrideEntry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    model: str
    input: Rate | None = None
    output: Rate | None = None
    cache_write_5m: Rate | None = None
    cache_write_1h: Rate | None = None
    cache_read: Rate | None = None
    batch_discount: Annotated[Decimal, pydantic.Field(ge=0, le=1)] = Decimal(0)
    effective: date = date.min
    simulates: str | None = None

    @pydantic.model_validator(mode="after")
    def _rates_or_simulates(self) -> _OverrideEntry:
        has_rates = self.input is not None or self.output is not None
        if self.simulates is not None and has_rates:
            raise ValueError("give either input/output rates or simulates, not both")
        if self.simulates is None and (self.input is None or self.output is None):
            raise ValueError("both input and output are required (USD per million tokens)")
        return self


_ENTRIES = pydantic.TypeAdapter(list[_OverrideEntry])


def parse_overrides(data: Mapping[str, Any], source: str) -> list[PriceOverride]:
    """The `[[prices]]` entries of a settings table as PriceOverrides (other top-level keys
    belong to other settings and are left alone); errors name the entry and field."""
    entries = validate(_ENTRIES, data.get("prices", []), source, prefix="prices")
    overrides = []
    for i, entry in enumerate(entries):
        try:
            overrides.append(_override(entry))
        except ConfigError as exc:
            raise ConfigFileError(source, [f"prices[{i}]: {exc}"]) from None
    return overrides


def _override(entry: _OverrideEntry) -> PriceOverride:
    _split(entry.model)
    if entry.simulates is not None:
        _split(entry.simulates)
        return PriceOverride(entry.model, None, entry.effective, entry.simulates)
    assert entry.input is not None and entry.output is not None
    price = Price(
        entry.input,
        entry.output,
        entry.cache_write_5m,
        entry.cache_write_1h,
        entry.cache_read,
        entry.batch_discount,
        source=f"override from {entry.effective.isoformat()}"
        if entry.effective > date.min
        else "override",
    )
    return PriceOverride(entry.model, price, entry.effective, None)
