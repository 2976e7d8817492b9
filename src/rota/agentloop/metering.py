"""Budgets and metering around an agent's model calls: a wrapper, not a branch of the loop.

Two layers of the model chain (agentloop/chain.py) share one `Meter`. `BudgetedModel`, outside
the call's durable step, asks `Meter.check` before each call (fail closed: the worst case of
the call, an upper bound of its prompt tokens (`prompt_bound`) + max_tokens at the model's
dearest rates, must fit what is left of the run's Budget). `MeteredModel` makes the call
through `Meter.complete`, inside the call's durable step:

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

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from ..agents.types import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    Usage,
    messages_bound,
    prompt_bound,
)
from ..clock import Clock, system_clock
from ..cost import metrics
from ..cost.budgets import SharedBudget, worst_cost
from ..cost.price import Price
from ..cost.pricing import model_price, price_to_json, to_pusd
from ..errors import BudgetExceeded
from ..model import ModelCall, Run
from ..observability.metrics import observe_agent_usage
from ..runtime import current_step, record_with_checkpoint
from ..storage.audit import BUDGET_EXCEEDED
from ..storage.base import Store
from ..storage.usage import BudgetRefusal, Hold

if TYPE_CHECKING:
    from ..agents.spec import AgentSpec
    from ..context import RunContext

# How long a call's hold on shared budgets lasts. Longer than any model call takes (the SDKs
# give up after 10 minutes), so a live call's hold never lapses; a crashed run's hold stops
# counting this long after the crash.
HOLD_TTL_S = 900.0
ANONYMOUS = "rota:anonymous"


@dataclass(frozen=True)
class MeteredRun:
    """Where a durable run's usage, holds, refusals and session time go: its run, the store,
    and how to call the store (on the worker's database threads)."""

    run: Run
    store: Store
    db: Callable[..., Awaitable[Any]]


class Meter:
    """Budgets and usage of one agent loop run; see the module docstring. `durable` is None
    for a run in memory, which checks its own Budget only and records nothing."""

    def __init__(
        self,
        agent: AgentSpec,
        *,
        clock: Clock = system_clock,
        durable: MeteredRun | None = None,
        shared: Sequence[SharedBudget] = (),
        prefix: str = "",
    ) -> None:
        self.agent = agent
        self.provider = agent.model_spec.partition(":")[0]
        self.durable = durable
        self.clock = clock
        self.started = self.clock.now()
        self.session_key = prefix or agent.name
        # Priced at the run's start (as reports price it): a price change never reprices a
        # run in flight, nor one resumed after it.
        run_start = (durable.run.started_at if durable is not None else None) or self.started
        self.price = model_price(
            agent.model_spec, datetime.fromtimestamp(run_start, UTC), price=agent.price
        )
        self._price_text: str | None = None
        self.spent = Decimal(0)  # USD of this run's calls so far (replayed ones too)
        self.allowances = 1  # budgets' worth this run may spend: humans may raise it
        self.worst = Usage(requests=0)  # the next call's worst case, set by check()
        self.worst_usd = Decimal(0)
        self.shared = list(shared)

    @property
    def bounded(self) -> bool:
        """Whether any budget applies: the run's own, or a shared one (whose hold is the
        worst case that `check` works out)."""
        return self.agent.budget is not None or bool(self.shared)

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
        if budget.tokens is not None and used.total + worst > budget.tokens * n:
            return (
                f"the next model call could use {worst} tokens (prompt at most {prompt} + "
                f"max_tokens {max_tokens}) and {budget.tokens * n - used.total} of the "
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
        if self.durable is None:
            return
        run = self.durable.run
        record = partial(
            self.durable.store.audit,
            run.principal or ANONYMOUS,
            BUDGET_EXCEEDED,
            actor_kind="machine",
            subject=self.agent.name,
            run_id=run.id,
            detail={"reason": detail, "model": self.agent.model_spec, **extra},
        )
        await self.durable.db(record)

    # -- the call ---------------------------------------------------------------------

    async def complete(self, model: Model, request: ModelRequest) -> ModelResponse:
        """Make the call (inside its durable step when the run has a context)."""
        at = self.clock.now()
        durable = self.durable
        if durable is None:
            response = await model.complete(request)
            self._observe_metrics(response)
            return response
        key = current_step().key
        held = await self._hold(durable, key, at)
        try:
            response = await model.complete(request)
        except BaseException:
            if held:  # no call was paid for; if this fails too, the hold expires by itself
                with contextlib.suppress(Exception):
                    await durable.db(durable.store.release_holds, durable.run.id, key)
            raise
        cost = self._observe_metrics(response)
        call = self._model_call(durable.run, key, at, response, cost)
        if not record_with_checkpoint(call):  # written with the step's checkpoint
            await durable.db(durable.store.record_model_call, call)
        return response

    def observe(self, response: ModelResponse) -> None:
        """Count a call's cost against the run (a fresh call or one replayed from its step)."""
        self.spent += self.price.cost(response.usage)

    async def close(self, tool_calls: int) -> None:
        """Record this execution's session time (durable runs)."""
        if self.durable is None:
            return
        seconds = self.clock.now() - self.started
        run = self.durable.run
        await self.durable.db(
            self.durable.store.record_session,
            run.id,
            self.session_key,
            run.attempt,
            self.agent.name,
            self.started,
            seconds,
            tool_calls,
        )

    # -- helpers ----------------------------------------------------------------------

    async def _hold(self, durable: MeteredRun, key: str, at: float) -> bool:
        if not self.shared:
            return False
        hold = Hold(
            run_id=durable.run.id,
            step_key=key,
            cost_pusd=to_pusd(self.worst_usd),
            tokens=self.worst.total,
            requests=1,
            created_at=at,
            expires_at=at + HOLD_TTL_S,
        )
        charges = [b.charge(at) for b in self.shared]
        store = durable.store
        refusal = await durable.db(store.reserve_budgets, charges, hold, at)
        if refusal is None:
            return True
        detail = _refusal_text(refusal)
        await self.refused(detail, budget=refusal.key, period=refusal.period, limit=refusal.what)
        raise BudgetExceeded(detail)

    def _price_json(self) -> str:
        """The run's price as stored with each of its calls: encoded once, not per call."""
        if self._price_text is None:
            self._price_text = price_to_json(self.price)
        return self._price_text

    def _observe_metrics(self, response: ModelResponse) -> Decimal:
        cost = self.price.cost(response.usage)
        provider, _, name = self.agent.model_spec.partition(":")
        metrics.observe(provider, name, response.usage, cost)
        observe_agent_usage(self.agent.name, self.agent.model_spec, response.usage, cost)
        return cost

    def _model_call(
        self, run: Run, key: str, at: float, response: ModelResponse, cost: Decimal
    ) -> ModelCall:
        u = response.usage
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
            price=self._price_json(),
            simulated=response.simulated,
        )


def shared_budgets(agent: AgentSpec, ctx: RunContext) -> list[SharedBudget]:
    """The shared budgets (`app.budget(...)`) that apply to this agent in this run."""
    services = ctx.services  # the App's, through the worker running this run
    if services is None:
        return []
    return [b for b in services.shared_budgets if b.applies(agent.name, ctx.run)]


class BudgetRefused(Exception):
    """A call refused by the run's own Budget before it was made (no step, no `model#n`):
    the run ends with reason budget_exceeded."""


AskMore = Callable[[str, Usage], Awaitable[bool]]


class BudgetedModel:
    """Fail closed, before the call's durable step: refuse a call whose worst case could
    exceed what is left of the run's Budget (with `ask_more`, a human may first allow one
    more budget's worth), and count each response against the run on the way back (a
    fresh call or one replayed from its step). `messages` is the conversation as the loop
    keeps it (unredacted), which bounds what was added since the last response."""

    def __init__(
        self,
        inner: Model,
        meter: Meter,
        *,
        ask_more: AskMore | None,
        messages: Callable[[], Sequence[Message]],
    ) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.meter = meter
        self.ask_more = ask_more
        self.messages = messages
        self.used = Usage(requests=0)
        self.last: ModelResponse | None = None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        problem = None
        if self.meter.bounded:  # else nothing reads the estimate: skip its JSON of the request
            prompt = self._prompt_estimate(request)
            problem = self.meter.check(self.used, prompt, request.max_tokens)
        while problem is not None:
            if self.ask_more is None or not await self.ask_more(problem, self.used):
                await self.meter.refused(problem, limit="run")
                raise BudgetRefused(problem)
            self.meter.allowances += 1
            problem = self.meter.check(self.used, prompt, request.max_tokens)
        response = await self.inner.complete(request)
        self.meter.observe(response)
        self.last = response
        self.used += response.usage
        return response

    def _prompt_estimate(self, request: ModelRequest) -> int:
        # An upper bound of the provider's count (agents/types.py). The previous prompt and
        # reply as the provider counted them, plus the bound of what was added since, is a
        # floor: a provider that frames more than the bound allows is caught from then on.
        whole = prompt_bound(request, self.meter.provider)
        last = self.last
        if last is None:
            return whole
        known = last.usage.total + messages_bound(list(self.messages())[-1:])
        return max(whole, known)


class MeteredModel:
    """Inside the call's durable step: hold the call's worst case on the shared budgets,
    make the call, record its usage and cost with the step (see the module docstring)."""

    def __init__(self, inner: Model, meter: Meter) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.meter = meter

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self.meter.complete(self.inner, request)


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
