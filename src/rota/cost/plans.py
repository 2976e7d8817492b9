"""Billing plans: the ways a platform can bill the same recurring AI work.

- `ApiPlan`: every token at list price (pay as you go).
- `SubscriptionPlan`: a monthly fee that covers runs up to allowances (runs, tokens or USD
  of list-price usage per month) and caps (runs per day / per hour); a run that starts
  when any of them is used up is dropped or pays overage.
- `SessionPlan`: a fee per hour of running agent session, plus tokens at list price.

Every plan also bills the job path's compute at `compute_usd_per_hour`, so one comparison
answers job versus agent versus hybrid. The file format is documented in docs/cost.md.

Plans are pydantic dataclasses: frozen values inside, checked once where a file (or a
caller) builds them, with unknown fields refused so that a typo is never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic.dataclasses import dataclass

from ..errors import ConfigFileError
from .files import read_settings, validate

Money = Annotated[Decimal, pydantic.Field(ge=0)]
Count = Annotated[int, pydantic.Field(ge=0, strict=True)]
Cap = Annotated[int, pydantic.Field(ge=1, strict=True)]
Name = Annotated[str, pydantic.Field(min_length=1)]
_CONFIG = pydantic.ConfigDict(extra="forbid")


@dataclass(frozen=True, kw_only=True, config=_CONFIG)
class ApiPlan:
    """Tokens at list price, plus compute."""

    name: Name
    kind: Literal["api"] = "api"
    compute_usd_per_hour: Money = Decimal(0)
    description: str = ""


@dataclass(frozen=True, kw_only=True, config=_CONFIG)
class SubscriptionPlan:
    """A monthly fee. Allowances and caps are checked when a run starts: a run that starts
    with room is covered whole, even if it then goes past an allowance."""

    name: Name
    monthly_fee: Money
    kind: Literal["subscription"] = "subscription"
    included_runs: Count | None = None  # per month; None: no limit
    included_tokens: Count | None = None  # per month, all kinds of token together
    included_usd: Money | None = None  # per month, usage valued at list price
    max_runs_per_day: Cap | None = None  # per UTC day
    max_runs_per_hour: Cap | None = None  # per UTC clock hour
    over_cap: Literal["drop", "overage"] = "drop"
    overage_per_run: Money = Decimal(0)
    overage_usd_per_mtok: Money | None = None  # None: an overage run's tokens at list price
    compute_usd_per_hour: Money = Decimal(0)
    description: str = ""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> SubscriptionPlan:
        if self.included_tokens is not None and self.included_usd is not None:
            raise ValueError("give included_tokens or included_usd, not both")
        has_overage = self.overage_per_run > 0 or self.overage_usd_per_mtok is not None
        if self.over_cap == "drop" and has_overage:
            raise ValueError(
                "overage_per_run and overage_usd_per_mtok apply only with over_cap = 'overage'"
            )
        return self


@dataclass(frozen=True, kw_only=True, config=_CONFIG)
class SessionPlan:
    """A fee per hour of agent session, each session billed for at least
    `min_session_seconds`, plus tokens at list price and compute."""

    name: Name
    session_usd_per_hour: Money
    kind: Literal["session"] = "session"
    min_session_seconds: Annotated[Decimal, pydantic.Field(ge=0)] = Decimal(0)
    compute_usd_per_hour: Money = Decimal(0)
    description: str = ""


Plan = ApiPlan | SubscriptionPlan | SessionPlan
KINDS: dict[str, type[Plan]] = {
    "api": ApiPlan,
    "subscription": SubscriptionPlan,
    "session": SessionPlan,
}
_ADAPTERS: dict[str, pydantic.TypeAdapter[Any]] = {
    k: pydantic.TypeAdapter(c) for k, c in KINDS.items()
}


def parse_plan(data: Mapping[str, Any], source: str = "plan", prefix: str = "") -> Plan:
    """One plan from a table; `kind` picks its fields. Errors name `source` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigFileError(source, [f"{prefix or 'a plan'} must be a table, got {data!r}"])
    kind = data.get("kind")
    where = f"{prefix}.kind" if prefix else "kind"
    if kind is None:
        raise ConfigFileError(source, [f"field {where!r} is required: {_kinds()}"])
    if not isinstance(kind, str) or kind not in KINDS:  # a list or table is no kind either
        raise ConfigFileError(source, [f"field {where!r}: unknown plan kind {kind!r}; {_kinds()}"])
    plan: Plan = validate(_ADAPTERS[kind], dict(data), source, prefix)
    return plan


def load_plans(path: str | Path) -> list[Plan]:
    """The plans in a TOML or JSON file: one plan at the top level, or several as
    `[[plans]]` (a `plans` array)."""
    return plans_document(read_settings(path), str(path))


def plans_document(data: Mapping[str, Any], source: str) -> list[Plan]:
    """The plans of a plan file's top-level table (or an HTTP body of the same shape):
    one plan, or several as a `plans` array. Errors name `source` and the field."""
    if "plans" not in data:
        return [parse_plan(data, source)]
    extra = sorted(set(data) - {"plans"})
    if extra:
        raise ConfigFileError(source, [f"unknown field {extra[0]!r} beside 'plans'"])
    if not isinstance(data["plans"], list) or not data["plans"]:
        raise ConfigFileError(source, ["'plans' must be a non-empty array of plan tables"])
    return [parse_plan(p, source, f"plans[{i}]") for i, p in enumerate(data["plans"])]


def _kinds() -> str:
    return "one of " + ", ".join(repr(k) for k in KINDS)
