"""Where running code gets its prices, and how a price is kept with the usage it billed.

- The process-wide price table is the bundled genai-prices data plus the overrides in the
  TOML (or JSON) file named by `ROTA_PRICES` (`[[prices]]` entries, see docs/cost.md). One
  setting, read the same way where an agent is defined, where it runs and where a report is
  made, so the three always agree. An agent's own `price=` wins over it.
- A scripted model is simulated: without `price=` or an override it costs a *labelled*
  zero (`SIMULATED`, recorded with its usage as "simulated"), never an unknown silent zero;
  an agent with a USD budget must price it (a zero price would never stop anything).
- Money in the store is an integer of picodollars (USD x 1e12): exact sums in SQL.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import UnknownPrice
from .files import read_settings
from .price import Price
from .prices import PriceOverride, PriceTable

PRICES_ENV = "ROTA_PRICES"
PICO = Decimal(10) ** 12
SIMULATED_SOURCE = "simulated: a scripted model's made-up usage costs nothing"
SIMULATED = Price(Decimal(0), Decimal(0), source=SIMULATED_SOURCE)


def default_table() -> PriceTable:
    """The bundled list prices plus the overrides in $ROTA_PRICES (re-read when it changes)."""
    path = os.environ.get(PRICES_ENV, "").strip()
    if not path:
        return _table(None, 0.0)
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = -1.0  # from_file reports the missing file, naming the variable's value
    return _table(path, mtime)


def configured_overrides(path: str | Path | None = None) -> list[PriceOverride]:
    """The price overrides in `path`, else in $ROTA_PRICES; none when neither is given."""
    text = str(path) if path is not None else os.environ.get(PRICES_ENV, "").strip()
    if not text:
        return []
    # The file's pydantic models are built only when a prices file is read.
    from .overrides import parse_overrides  # noqa: PLC0415  # heavy: pydantic models

    return parse_overrides(read_settings(text), text)


@lru_cache(maxsize=8)
def _table(path: str | None, mtime: float) -> PriceTable:
    return PriceTable() if path is None else PriceTable.from_file(path)


def model_price(
    spec: str, at: datetime, *, price: Price | None = None, table: PriceTable | None = None
) -> Price:
    """The price of `spec` (provider:model) at `at`: `price` if given, else the table's;
    a scripted model without one is SIMULATED. Anything else unknown raises UnknownPrice."""
    try:
        return (table or default_table()).resolve(spec, at, price=price)
    except UnknownPrice:
        if spec.startswith("scripted:"):
            return SIMULATED
        raise


def to_pusd(usd: Decimal) -> int:
    return int((usd * PICO).to_integral_value(ROUND_HALF_EVEN))


def from_pusd(pusd: int) -> Decimal:
    return Decimal(pusd) / PICO


def price_to_json(price: Price) -> str:
    """A Price as the JSON text stored with each model call (rates as decimal strings)."""
    return json.dumps(_price_data(price), sort_keys=True, separators=(",", ":"))


def price_from_json(text: str) -> Price:
    return _price(json.loads(text))


_RATES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read", "batch_discount")


def _price_data(price: Price) -> dict[str, Any]:
    data: dict[str, Any] = {name: str(getattr(price, name)) for name in _RATES}
    data["source"] = price.source
    if price.tiers:
        data["tiers"] = [[above, _price_data(p)] for above, p in price.tiers]
    if price.batch is not None:
        data["batch"] = _price_data(price.batch)
    return data


def _price(data: dict[str, Any]) -> Price:
    return Price(
        **{name: Decimal(data[name]) for name in _RATES},
        tiers=tuple((int(above), _price(p)) for above, p in data.get("tiers", ())),
        batch=_price(data["batch"]) if "batch" in data else None,
        source=data.get("source", "recorded"),
    )
