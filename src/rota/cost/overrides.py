"""Price overrides as a settings file writes them: the `[[prices]]` entries of a TOML or JSON
table, checked by pydantic (docs/cost.md). Only reading such a file loads this module: a run
prices its calls with `rota.cost.prices`, which needs no pydantic model.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import pydantic

from ..errors import ConfigError, ConfigFileError
from .files import validate
from .price import Price, PriceOverride, split_model

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
    split_model(entry.model)
    if entry.simulates is not None:
        split_model(entry.simulates)
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
