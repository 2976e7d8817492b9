"""Budgets: limits on what agent runs may spend, checked before each model call.

`Budget` limits one agent run (`Agent(budget=...)`); a `SharedBudget` is a Budget shared by
every run of an agent, a workflow or a principal per UTC day or calendar month
(`app.budget(...)`), whose limits the store enforces with holds (rota.storage.usage).
`worst_cost` is what a call can cost at most, and `definition_price` the price an agent is
checked against where it is defined. The metering that enforces them around each model call
is in rota.agentloop.metering. See docs/cost.md#budgets.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from ..clock import iso
from ..durations import Duration
from ..errors import ConfigError
from ..identity.principals import approver_groups
from ..model import Run, TokenCounts
from ..storage.usage import BudgetCharge
from .price import Price
from .pricing import SIMULATED, from_pusd, model_price, to_pusd

Scope = Literal["agent", "workflow", "principal"]
Per = Literal["day", "month"]


@dataclass(frozen=True)
class Budget:
    """Limits on one agent run (`Agent(budget=...)`), or on every run of an agent, workflow
    or principal per day or month (`app.budget(...)`). Enforced before each model call with
    the call's worst case (fail closed: a call that could exceed a limit is not made);
    `usd` prices it at the model's price. See docs/cost.md#budgets."""

    usd: Decimal | float | int | None = None
    tokens: int | None = None
    requests: int | None = None
    # Per-run budgets only: instead of stopping, park the run and ask a human of these
    # approver groups to allow as much again (each approval adds one more budget's worth).
    approvers: str | Sequence[str] | None = None
    approval_timeout: Duration | None = None

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None and self.requests is None:
            raise ConfigError(
                "a Budget needs a limit: Budget(usd=0.05), Budget(tokens=20_000) or "
                "Budget(requests=10)"
            )
        for field in ("usd", "tokens", "requests"):
            value = getattr(self, field)
            if value is None:
                continue
            whole = field != "usd"
            kinds = int if whole else (int, float, Decimal)
            if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
                what = "a whole number > 0" if whole else "a number > 0 (USD)"
                raise ConfigError(
                    f"Budget({field}={value!r}) must be {what}: a limit of zero or less "
                    f"would refuse every model call; leave {field} out for no limit"
                )
        if self.approvers is not None:
            object.__setattr__(self, "approvers", approver_groups(self.approvers, what="Budget"))
        if self.usd is not None:
            # Through the decimal text, so that 0.1 stays 0.1 (budgets compare to Decimals).
            object.__setattr__(self, "usd", Decimal(str(self.usd)))


@dataclass(frozen=True)
class SharedBudget:
    """A budget shared by every run of an agent, a workflow or a principal, per UTC day or
    calendar month. Declared with `app.budget(...)`."""

    scope: Scope
    name: str
    per: Per
    budget: Budget

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.name}"

    def applies(self, agent: str, run: Run) -> bool:
        value = {"agent": agent, "workflow": run.name, "principal": run.principal}[self.scope]
        return value == self.name

    def charge(self, at: float) -> BudgetCharge:
        day = datetime.fromtimestamp(at, UTC)
        if self.per == "day":
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            period, length = start.strftime("%Y-%m-%d"), 86400.0
        else:
            start = datetime(day.year, day.month, 1, tzinfo=UTC)
            days = calendar.monthrange(day.year, day.month)[1]
            period, length = start.strftime("%Y-%m"), days * 86400.0
        b = self.budget
        return BudgetCharge(
            key=self.key,
            scope=self.scope,
            value=self.name,
            period=period,
            start=start.timestamp(),
            end=start.timestamp() + length,
            limit_pusd=None if b.usd is None else to_pusd(Decimal(b.usd)),
            limit_tokens=b.tokens,
            limit_requests=b.requests,
        )


class BudgetReader(Protocol):
    def budget_used(self, charge: BudgetCharge) -> tuple[int, int, int]: ...

    def budget_held(self, charge: BudgetCharge, now: float) -> tuple[int, int, int]: ...


@dataclass(frozen=True)
class BudgetStatus:
    """A shared budget in its current period: its limits, what recorded calls spent, and
    what calls in flight hold (each as USD, tokens, requests)."""

    budget: SharedBudget
    charge: BudgetCharge
    spent: tuple[Decimal, int, int]
    held: tuple[Decimal, int, int]

    def to_json(self) -> dict[str, Any]:
        b, c = self.budget.budget, self.charge
        return {
            "key": self.budget.key,
            "scope": self.budget.scope,
            "name": self.budget.name,
            "per": self.budget.per,
            "period": c.period,
            "period_start": iso(c.start),
            "period_end": iso(c.end),
            "limit": _units(None if b.usd is None else Decimal(b.usd), b.tokens, b.requests),
            "spent": _units(*self.spent),
            "held": _units(*self.held),
        }


def budget_status(store: BudgetReader, budget: SharedBudget, now: float) -> BudgetStatus:
    """What `budget` has spent and holds in the period that `now` falls in."""
    charge = budget.charge(now)
    spent, held = store.budget_used(charge), store.budget_held(charge, now)
    return BudgetStatus(
        budget,
        charge,
        (from_pusd(spent[0]), spent[1], spent[2]),
        (from_pusd(held[0]), held[1], held[2]),
    )


def _units(usd: Decimal | None, tokens: int | None, requests: int | None) -> dict[str, Any]:
    return {
        "usd": None if usd is None else f"{usd.normalize():f}",
        "tokens": tokens,
        "requests": requests,
    }


def shared_budget(
    budget: Budget,
    *,
    per: str,
    agent: str | None = None,
    workflow: str | None = None,
    principal: str | None = None,
) -> SharedBudget:
    """Check `app.budget(...)`'s arguments: exactly one of agent/workflow/principal."""
    given = (("agent", agent), ("workflow", workflow), ("principal", principal))
    named = [(scope, name) for scope, name in given if name is not None]
    if len(named) != 1:
        raise ConfigError(
            "a shared budget belongs to exactly one agent, workflow or principal: "
            "app.budget(agent='billing-reviewer', usd=5, per='day')"
        )
    scope, name = named[0]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"app.budget({scope}=...) needs a name, got {name!r}")
    if per not in ("day", "month"):
        raise ConfigError(f"app.budget(per=...) must be 'day' or 'month', got {per!r}")
    return SharedBudget(scope, name, per, budget)  # type: ignore[arg-type]


def definition_price(name: str, spec: str, price: Price | None, budget: Budget | None) -> Price:
    """The agent's price now, checked where it is defined: an unknown price raises
    UnknownPrice (saying how to give one), and a USD budget on a simulated model without a
    price is refused (a zero price would never stop anything)."""
    if price is not None and not isinstance(price, Price):
        raise ConfigError(f"{name}: price must be a rota.cost.Price(input=..., output=...)")
    found = model_price(spec, datetime.now(UTC), price=price)
    if found is SIMULATED and budget is not None and budget.usd is not None:
        raise ConfigError(
            f"{name}: Budget(usd=...) needs a price for the simulated model {spec!r}: pass "
            "price=Price(input=..., output=...) or add an override with simulates = "
            "'anthropic:...' to $ROTA_PRICES"
        )
    return found


def worst_cost(price: Price, prompt: int, max_tokens: int) -> Decimal:
    """The most a call can cost: every prompt token at the dearest prompt rate (plain input,
    cache write or cache read), and max_tokens of output."""
    shapes = (
        TokenCounts(input_tokens=prompt, output_tokens=max_tokens),
        TokenCounts(cache_write_tokens=prompt, output_tokens=max_tokens),
        TokenCounts(cache_read_tokens=prompt, output_tokens=max_tokens),
    )
    return max(max(price.cost(u), price.cost(u, cache_ttl="1h")) for u in shapes)
