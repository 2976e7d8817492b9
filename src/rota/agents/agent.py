"""Agent: a model, instructions and tools, run in a loop until it gives an acceptable answer.

An Agent is a definition, checked when it is made (an unknown model or a missing API key
fails here, not at 3 a.m. in a worker). `await agent.run(task)` runs it in memory; registered
on an App (`app.agent(reviewer)`) it runs as a job, and `ctx.agent(reviewer, task)` runs it
inside a workflow. In both durable forms every model call and every tool call is a step of
the run, so a run resumed after a crash replays what was done instead of doing it again.
The loop itself lives in `rota.agents.loop`.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from ..cost.prices import Price
from ..durations import Duration, optional_seconds, seconds
from ..errors import AgentFailed, ConfigError
from ..identity.principals import check_name as check_principal_name
from .budgets import definition_price
from .cache import with_cache
from .models.ratelimited import RateLimit, RateLimitedModel
from .tools import Tool, ToolGuard, ToolSource, as_tool, open_tool_sources
from .types import Message, Model, Usage

if TYPE_CHECKING:
    from ..durable import RunContext
    from ..identity.principals import Principal

Reason = Literal[
    "succeeded",
    "max_steps",
    "success_check_failed",
    "repeated_tool_call",
    "timeout",
    "budget_exceeded",
    "provider_error",
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]

SuccessCheck = Callable[[Any], "bool | Awaitable[bool | None] | None"]


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
            from ..approvals.records import approver_groups

            object.__setattr__(self, "approvers", approver_groups(self.approvers, what="Budget"))
        if self.usd is not None:
            # Through the decimal text, so that 0.1 stays 0.1 (budgets compare to Decimals).
            object.__setattr__(self, "usd", Decimal(str(self.usd)))


@dataclass(frozen=True)
class AgentResult:
    """How a run of an agent ended.

    `output` is the validated answer (an instance of the agent's `output` type, or the final
    text) when `reason` is "succeeded", else None. `steps` counts model calls. `simulated`
    is True when any response came from an offline (scripted) model: its text, latency and
    token counts are made up. `error` explains any other reason.
    """

    output: Any
    text: str
    reason: Reason
    usage: Usage
    steps: int
    messages: tuple[Message, ...]
    simulated: bool = False
    error: str | None = None
    output_json: Any = None  # `output` as JSON-ready data (what a job stores as its result)
    tool_calls: int = 0
    cached: bool = False  # a decision reused from the cache: no model call, no tokens

    @property
    def ok(self) -> bool:
        return self.reason == "succeeded"

    def output_or_raise(self, agent: str = "agent") -> Any:
        """The output, or AgentFailed naming the reason."""
        if not self.ok:
            raise AgentFailed(agent, self.reason, self.error)
        return self.output


class Agent:
    """A model with instructions and tools; see docs/agents.md for the loop's guarantees."""

    def __init__(
        self,
        name: str,
        model: str | Model,
        instructions: str,
        tools: Sequence[Tool | ToolSource | Callable[..., Any]] = (),
        max_steps: int = 10,
        output: Any = None,
        success: SuccessCheck | None = None,
        budget: Budget | None = None,
        run_as: str | None = None,
        temperature: float | None = None,
        max_tokens: int = 1024,
        timeout: Duration | None = None,
        *,
        base_url: str | None = None,
        tool_guards: Sequence[ToolGuard] = (),
        max_repeated_calls: int = 3,
        rate_limit: RateLimit | None = None,
        price: Price | None = None,
        cache: bool = False,
        cache_ttl: Duration = "1h",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an agent needs a name: Agent(name='billing-reviewer', ...)")
        self.name = name
        self.model_spec, self.model = _resolve(model, base_url, rate_limit)
        if not isinstance(instructions, str):
            raise ConfigError(f"{name}: instructions must be a string")
        self.instructions = instructions
        self.tools: dict[str, Tool] = {}
        sources: list[ToolSource] = []  # MCP servers: their tools are listed per run
        for item in tools:
            if isinstance(item, ToolSource):
                sources.append(item)
                continue
            t = as_tool(item)
            if t.name in self.tools:
                raise ConfigError(f"{name}: two tools are named {t.name!r}; rename one")
            self.tools[t.name] = t
        self.tool_sources: tuple[ToolSource, ...] = tuple(sources)
        self.max_steps = _positive_int(name, "max_steps", max_steps)
        self.max_tokens = _positive_int(name, "max_tokens", max_tokens)
        self.max_repeated_calls = _positive_int(name, "max_repeated_calls", max_repeated_calls)
        self.output = output
        self._adapter: pydantic.TypeAdapter[Any] | None = None
        self.output_schema: dict[str, Any] | None = None
        if output is not None:
            try:
                self._adapter = pydantic.TypeAdapter(output)
                self.output_schema = self._adapter.json_schema()
            except pydantic.PydanticUserError as exc:
                raise ConfigError(
                    f"{name}: output={output!r} cannot be described as JSON Schema ({exc}); "
                    "use a pydantic model"
                ) from None
        if success is not None and not callable(success):
            raise ConfigError(f"{name}: success must be a function of the output")
        self.success = success
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"{name}: budget must be a Budget(usd=..., tokens=..., ...)")
        self.budget = budget
        # Priced where it is defined: an unknown price fails here, not in a worker at 3 a.m.
        self.price = price
        self.defined_price = definition_price(name, self.model_spec, price, budget)
        self.run_as = None if run_as is None else check_principal_name(run_as)
        if temperature is not None and (isinstance(temperature, bool) or temperature < 0):
            raise ConfigError(f"{name}: temperature must be >= 0, got {temperature!r}")
        self.temperature = temperature
        self.timeout_s = optional_seconds(timeout, what=f"{name} timeout")
        self.tool_guards: tuple[ToolGuard, ...] = tuple(tool_guards)
        self.cache = bool(cache)  # reuse decisions on identical inputs: see agents/cache.py
        self.cache_ttl_s = seconds(cache_ttl, what=f"{name} cache_ttl")

    def __repr__(self) -> str:
        return f"<Agent {self.name} model={self.model_spec}>"

    async def run(
        self,
        task: Any = None,
        *,
        deps: Any = None,
        ctx: RunContext | None = None,
        step_prefix: str = "",
        principal: Principal | None = None,
    ) -> AgentResult:
        """Run the loop to an end. With `ctx`, model and tool calls are durable steps of that
        run (their names start with `step_prefix`) and the run's principal decides which
        tools may be called; without, everything stays in memory and `principal` decides
        (None: only tools that need no scope)."""
        from .loop import AgentLoop

        def loop(agent: Agent) -> AgentLoop:
            return AgentLoop(
                agent, task, deps=deps, ctx=ctx, prefix=step_prefix, principal=principal
            )

        async def run() -> AgentResult:
            if not self.tool_sources:
                return await loop(self).run()
            # Tool sources (MCP servers) are opened for this run only, in this task, and
            # closed when it ends; the loop sees a copy of the agent with their tools added.
            async with open_tool_sources(self.name, self.tools, self.tool_sources) as tools:
                agent = copy.copy(self)
                agent.tools = tools
                return await loop(agent).run()

        if self.cache and ctx is not None:
            return await with_cache(self, task, ctx, step_prefix, run)
        return await run()

    def run_sync(
        self, task: Any = None, *, deps: Any = None, principal: Principal | None = None
    ) -> AgentResult:
        """`run` for scripts and notebooks without an event loop."""
        return asyncio.run(self.run(task, deps=deps, principal=principal))

    # -- used by the loop --------------------------------------------------------------

    def validate_output(self, text: str) -> tuple[Any, Any]:
        """(output, its JSON) from a final answer; raises pydantic.ValidationError."""
        if self._adapter is None:
            return text, text
        value = self._adapter.validate_json(_strip_fence(text))
        return value, self._adapter.dump_python(value, mode="json")

    def job_function(self, deps: Any = None) -> Callable[..., Awaitable[Any]]:
        """The function a job of this agent runs: the payload is the task; anything but
        "succeeded" fails the run with AgentFailed."""

        async def run_agent(ctx: RunContext, task: Any) -> Any:
            result = await self.run(task, deps=deps, ctx=ctx)
            if not result.ok:
                raise AgentFailed(self.name, result.reason, result.error)
            return result.output_json

        run_agent.__name__ = run_agent.__qualname__ = self.name
        run_agent.__doc__ = f"Runs agent {self.name!r}."
        return run_agent


def _resolve(
    model: str | Model, base_url: str | None, rate_limit: RateLimit | None
) -> tuple[str, Model]:
    """A model string through the registry (a missing key or unknown model fails here), with
    retries around real providers; a Model object is used as given. A rate limit sits inside
    the retries, so that every attempt, retried ones too, waits its turn."""
    if not isinstance(model, str):
        if not callable(getattr(model, "complete", None)):
            raise ConfigError(f"model must be 'provider:model' or a Model, got {model!r}")
        spec = f"{model.provider}:{model.name}"
        return spec, RateLimitedModel(model, rate_limit) if rate_limit else model
    from .models.registry import resolve_model
    from .models.retrying import RetryingModel

    resolved: Model = resolve_model(model, base_url=base_url)
    if rate_limit is not None:
        resolved = RateLimitedModel(resolved, rate_limit)
    if resolved.provider != "scripted" and not isinstance(resolved, RetryingModel):
        resolved = RetryingModel(resolved)
    return model, resolved


def _positive_int(agent: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{agent}: {option} must be a whole number >= 1, got {value!r}")
    return value


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ```json fence even when asked not to."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        body = body[3:-3]
        first, _, rest = body.partition("\n")
        return rest if first.strip().isalpha() or not first.strip() else body
    return body
