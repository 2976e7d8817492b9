"""Budgets and metering around an agent's model calls: a wrapper, not a branch of the loop.

The loop asks `Metering.check` before each call (fail closed: the worst case of the call,
an upper bound of its prompt tokens (`prompt_bound`) + max_tokens at the model's dearest
rates, must fit what is left of the run's Budget) and makes the call through
`Metering.complete`, inside the call's durable step:

1. shared budgets (per agent, workflow or principal, per day or month, declared with
   `app.budget(...)`) *hold* the worst case in the store, in one transaction under the
   budget's row lock, so that concurrent runs cannot overspend them together;
2. the model is called;
3. the call's usage and cost are recorded (`rota_usage`, keyed by run and step: a step
   re-executed after a crash replaces its row) and its holds released, in one transaction.

A refusal ends the run with reason `budget_exceeded` and writes a BUDGET_EXCEEDED audit
record. Runs outside a worker (`agent.run()` in memory) check their own Budget only.
"""

from __future__ import annotations

import calendar
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from ..clock import Clock, system_clock
from ..cost import metrics
from ..cost.prices import Price
from ..cost.pricing import SIMULATED, model_price, price_to_json, to_pusd
from ..durable import current_runtime, current_step, record_with_checkpoint
from ..errors import ConfigError, RotaError
from ..identity.audit import BUDGET_EXCEEDED
from ..storage.usage import BudgetCharge, BudgetRefusal, Hold, ModelCall
from .types import Message, Model, ModelRequest, ModelResponse, Usage, to_json

if TYPE_CHECKING:
    from ..durable import RunContext, Runtime
    from ..model import Run
    from .agent import Agent, Budget

Scope = Literal["agent", "workflow", "principal"]
Per = Literal["day", "month"]
# How long a call's hold on shared budgets lasts. Longer than any model call takes (the SDKs
# give up after 10 minutes), so a live call's hold never lapses; a crashed run's hold stops
# counting this long after the crash.
HOLD_TTL_S = 900.0
ANONYMOUS = "rota:anonymous"
# Tokens a provider may add around what it is sent (see prompt_bound): per message, tool
# call, tool result, the system prompt and the reply it primes (OpenAI documents 3 per
# message and 3 for the reply), and, when tools or an output schema are sent, its own
# instructions for them (Anthropic documents a tool-use system prompt of 159 to 530 tokens,
# by model).
FRAMING_TOKENS = 4
TOOLS_PROMPT_TOKENS = 600
# Providers whose usage is made up by a script, not counted from the prompt: no framing
# of tools to allow for.
SIMULATED_PROVIDERS = frozenset({"scripted"})


class BudgetExceeded(RotaError):
    """A model call was refused because it could exceed a budget (the run ends with reason
    budget_exceeded)."""


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


def prompt_bound(request: ModelRequest, provider: str) -> int:
    """The most prompt tokens `provider` can count for `request`, known before it is sent.

    Every token a tokenizer produces stands for at least one byte of its input, so no
    tokenizer makes more tokens of a text than the text has UTF-8 bytes. The request (system
    prompt, messages with their tool calls and results, tool definitions, output schema) is
    measured as compact JSON, which holds every character the provider is sent (JSON
    escaping only adds bytes); the framing the provider adds around it is allowed for on
    top (FRAMING_TOKENS, TOOLS_PROMPT_TOKENS)."""
    content = [request.system, to_json(request.messages), to_json(request.tools)]
    size = _utf8_size([*content, request.output_schema])
    parts = 2 + _framed_parts(request.messages)  # + the system prompt and the reply
    instructed = bool(request.tools) or request.output_schema is not None
    tools = TOOLS_PROMPT_TOKENS if instructed and provider not in SIMULATED_PROVIDERS else 0
    return size + FRAMING_TOKENS * parts + tools


def messages_bound(messages: Sequence[Message]) -> int:
    """The most prompt tokens `messages` can add to a request (see prompt_bound)."""
    return _utf8_size(to_json(messages)) + FRAMING_TOKENS * _framed_parts(messages)


def _utf8_size(value: object) -> int:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: 3 bytes, no error


def _framed_parts(messages: Sequence[Message]) -> int:
    # OpenAI sends each tool result as a message of its own: frame each call and result.
    return sum(1 + len(m.tool_calls) + len(m.tool_results) for m in messages)


def worst_cost(price: Price, prompt: int, max_tokens: int) -> Decimal:
    """The most a call can cost: every prompt token at the dearest prompt rate (plain input,
    cache write or cache read), and max_tokens of output."""
    shapes = (
        Usage(input_tokens=prompt, output_tokens=max_tokens),
        Usage(cache_write_tokens=prompt, output_tokens=max_tokens),
        Usage(cache_read_tokens=prompt, output_tokens=max_tokens),
    )
    return max(max(price.cost(u), price.cost(u, cache_ttl="1h")) for u in shapes)


def tokens(usage: Usage) -> int:
    u = usage
    return u.input_tokens + u.output_tokens + u.cache_write_tokens + u.cache_read_tokens


class Metering:
    """Budgets and usage of one agent loop run; see the module docstring."""

    def __init__(self, agent: Agent, ctx: RunContext | None, prefix: str) -> None:
        self.agent = agent
        self.provider = agent.model_spec.partition(":")[0]
        self.ctx = ctx
        self.runtime: Runtime | None = current_runtime() if ctx is not None else None
        self.clock: Clock = self.runtime.clock if self.runtime is not None else system_clock
        self.started = self.clock.now()
        self.session_key = prefix or agent.name
        # Priced at the run's start (as reports price it): a price change never reprices a
        # run in flight, nor one resumed after it.
        run_start = (ctx.run.started_at if ctx is not None else None) or self.started
        self.price = model_price(
            agent.model_spec, datetime.fromtimestamp(run_start, UTC), price=agent.price
        )
        self.spent = Decimal(0)  # USD of this run's calls so far (replayed ones too)
        self.allowances = 1  # budgets' worth this run may spend: humans may raise it
        self.worst = Usage(requests=0)  # the next call's worst case, set by check()
        self.worst_usd = Decimal(0)
        self.shared = self._shared_budgets()

    # -- before a call ----------------------------------------------------------------

    def check(self, used: Usage, prompt: int, max_tokens: int) -> str | None:
        """Why the next call may not be made under the run's own Budget, or None. `prompt`
        is at least the provider's count of the call's prompt (see prompt_bound): the worst
        case set here is also what the call holds on shared budgets."""
        self.worst = Usage(input_tokens=prompt, output_tokens=max_tokens)
        self.worst_usd = worst_cost(self.price, prompt, max_tokens)
        budget = self.agent.budget
        if budget is None:
            return None
        n = self.allowances
        if budget.requests is not None and used.requests + 1 > budget.requests * n:
            return (
                f"the budget allows {budget.requests * n} model requests and {used.requests} "
                "were made"
            )
        worst = prompt + max_tokens
        if budget.tokens is not None and tokens(used) + worst > budget.tokens * n:
            return (
                f"the next model call could use {worst} tokens (prompt at most {prompt} + "
                f"max_tokens {max_tokens}) and {budget.tokens * n - tokens(used)} of the "
                f"budget's {budget.tokens * n} are left"
            )
        usd = None if budget.usd is None else Decimal(budget.usd) * n
        if usd is not None and self.spent + self.worst_usd > usd:
            return (
                f"the next model call could cost ${_usd(self.worst_usd)} (prompt at most "
                f"{prompt} + max_tokens {max_tokens} tokens at {_source(self.price)}) and "
                f"${_usd(usd - self.spent)} of the budget's ${_usd(usd)} is left"
            )
        return None

    async def refused(self, detail: str, **extra: Any) -> None:
        """Audit a refusal (durable runs only: an in-memory run has no log to write to)."""
        if self.ctx is None or self.runtime is None:
            return
        run = self.ctx.run
        record = partial(
            self.runtime.store.audit,
            run.principal or ANONYMOUS,
            BUDGET_EXCEEDED,
            actor_kind="machine",
            subject=self.agent.name,
            run_id=run.id,
            detail={"reason": detail, "model": self.agent.model_spec, **extra},
        )
        await self.runtime.db(record)

    # -- the call ---------------------------------------------------------------------

    async def complete(self, model: Model, request: ModelRequest) -> ModelResponse:
        """Make the call (inside its durable step when the run has a context)."""
        at = self.clock.now()
        if self.ctx is None or self.runtime is None:
            response = await model.complete(request)
            self._observe_metrics(response)
            return response
        key = current_step().key
        held = await self._hold(key, at)
        try:
            response = await model.complete(request)
        except BaseException:
            if held:  # no call was paid for; if this fails too, the hold expires by itself
                with contextlib.suppress(Exception):
                    await self.runtime.db(self.runtime.store.release_holds, self.ctx.run_id, key)
            raise
        cost = self._observe_metrics(response)
        call = self._model_call(key, at, response, cost)
        if not record_with_checkpoint(call):  # written with the step's checkpoint
            await self.runtime.db(self.runtime.store.record_model_call, call)
        return response

    def observe(self, response: ModelResponse) -> None:
        """Count a call's cost against the run (a fresh call or one replayed from its step)."""
        self.spent += self.price.cost(response.usage)

    async def close(self, tool_calls: int) -> None:
        """Record this execution's session time (durable runs)."""
        if self.ctx is None or self.runtime is None:
            return
        seconds = self.clock.now() - self.started
        run = self.ctx.run
        await self.runtime.db(
            self.runtime.store.record_session,
            run.id,
            self.session_key,
            run.attempt,
            self.agent.name,
            self.started,
            seconds,
            tool_calls,
        )

    # -- helpers ----------------------------------------------------------------------

    def _shared_budgets(self) -> list[SharedBudget]:
        # The worker running this run holds the App, which holds the declared budgets.
        app = getattr(self.runtime, "app", None)
        if self.ctx is None or app is None:
            return []
        run = self.ctx.run
        return [b for b in getattr(app, "budgets", ()) if b.applies(self.agent.name, run)]

    async def _hold(self, key: str, at: float) -> bool:
        if not self.shared or self.ctx is None or self.runtime is None:
            return False
        hold = Hold(
            run_id=self.ctx.run_id,
            step_key=key,
            cost_pusd=to_pusd(self.worst_usd),
            tokens=tokens(self.worst),
            requests=1,
            created_at=at,
            expires_at=at + HOLD_TTL_S,
        )
        charges = [b.charge(at) for b in self.shared]
        store = self.runtime.store
        refusal = await self.runtime.db(store.reserve_budgets, charges, hold, at)
        if refusal is None:
            return True
        detail = _refusal_text(refusal)
        await self.refused(detail, budget=refusal.key, period=refusal.period, limit=refusal.what)
        raise BudgetExceeded(detail)

    def _observe_metrics(self, response: ModelResponse) -> Decimal:
        cost = self.price.cost(response.usage)
        provider, _, name = self.agent.model_spec.partition(":")
        metrics.observe(provider, name, response.usage, cost)
        return cost

    def _model_call(self, key: str, at: float, response: ModelResponse, cost: Decimal) -> ModelCall:
        assert self.ctx is not None
        run, u = self.ctx.run, response.usage
        return ModelCall(
            run_id=run.id,
            step_key=key,
            at=at,
            name=run.name,
            agent=self.agent.name,
            principal=run.principal,
            trigger=run.trigger,
            provider=self.agent.model_spec.partition(":")[0],
            model=self.agent.model_spec,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cache_read_tokens=u.cache_read_tokens,
            reasoning_tokens=u.reasoning_tokens,
            requests=u.requests,
            cost_pusd=to_pusd(cost),
            price=price_to_json(self.price),
            simulated=response.simulated,
        )


def _refusal_text(r: BudgetRefusal) -> str:
    per = "day" if len(r.period) == 10 else "month"
    if r.what == "usd":
        amounts = [_usd(Decimal(v) / Decimal(10**12)) for v in (r.limit, r.spent, r.held, r.wanted)]
        limit, spent, held, wanted = (f"${a}" for a in amounts)
    else:
        limit, spent, held, wanted = (f"{v} {r.what}" for v in (r.limit, r.spent, r.held, r.wanted))
    return (
        f"the shared budget {r.key} allows {limit} per {per} ({r.period}); {spent} are spent "
        f"and {held} held by calls in flight, and the next call could use {wanted}"
    )


def _source(price: Price) -> str:
    return "the agent's price=" if price.source == "explicit" else price.source


def _usd(value: Decimal) -> str:
    """Dollars for messages: at least cents, more digits when they matter."""
    text = f"{value.normalize():f}"
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"
