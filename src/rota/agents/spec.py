"""AgentSpec: what an agent is, checked when it is defined.

A model (resolved through the registry when the agent is defined: an unknown model or a
missing API key fails here, not at 3 a.m. in a worker), instructions, tools, limits, budget
and price. The features that run an agent (the loop, metering, the decision cache) read only
this; `rota.agentloop.agent.Agent` adds running it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self

import pydantic

from ..cost.budgets import Budget, definition_price
from ..cost.price import Price
from ..durations import Duration, optional_seconds, seconds
from ..errors import ConfigError, check_options
from ..identity.principals import check_name as check_principal_name
from .models.ratelimited import RateLimit, RateLimitedModel
from .models.registry import resolve_model
from .models.retrying import RetryingModel
from .tools import Tool, ToolGuard, ToolSource, as_tool
from .types import Model

SuccessCheck = Callable[[Any], "bool | Awaitable[bool | None] | None"]


class AgentSpec:
    """An agent's definition; see docs/agents.md. `model` is what the loop calls:
    `provider` (the provider's Model) inside a RateLimitedModel when `rate_limit` is given,
    inside a RetryingModel when `retries` (real providers, given as a model string)."""

    def __new__(cls, *args: Any, **options: Any) -> Self:
        # Before __init__, which would raise a bare TypeError: a misspelt option is a
        # ConfigError with the closest name (`Agent(max_step=3)`: did you mean max_steps).
        allowed = _init_options(cls)
        if allowed is not None:
            check_options(f"Agent({options.get('name', '...')!r})", options, allowed)
        return super().__new__(cls)

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
        resolved = _resolve(model, base_url, rate_limit)
        self.model_spec, self.provider, self.retries, self.model = resolved
        self.rate_limit = rate_limit
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
        self.cache = bool(cache)  # reuse decisions on identical inputs: see agentloop/cache.py
        self.cache_ttl_s = seconds(cache_ttl, what=f"{name} cache_ttl")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} model={self.model_spec}>"

    def validate_output(self, text: str) -> tuple[Any, Any]:
        """(output, its JSON) from a final answer; raises pydantic.ValidationError."""
        if self._adapter is None:
            return text, text
        value = self._adapter.validate_json(_strip_fence(text))
        return value, self._adapter.dump_python(value, mode="json")


def _resolve(
    model: str | Model, base_url: str | None, rate_limit: RateLimit | None
) -> tuple[str, Model, bool, Model]:
    """(spec, provider, retries, model): a model string through the registry (a missing key
    or unknown model fails here), with retries around real providers; a Model object is used
    as given. A rate limit sits inside the retries, so that every attempt, retried ones too,
    waits its turn: `model` is `RetryingModel(RateLimitedModel(provider))`, less the layers
    that do not apply."""
    if not isinstance(model, str):
        if not callable(getattr(model, "complete", None)):
            raise ConfigError(f"model must be 'provider:model' or a Model, got {model!r}")
        spec = f"{model.provider}:{model.name}"
        return spec, model, False, RateLimitedModel(model, rate_limit) if rate_limit else model
    provider: Model = resolve_model(model, base_url=base_url)
    resolved = provider
    if rate_limit is not None:
        resolved = RateLimitedModel(resolved, rate_limit)
    retries = resolved.provider != "scripted" and not isinstance(resolved, RetryingModel)
    if retries:
        resolved = RetryingModel(resolved)
    return model, provider, retries, resolved


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


_options_of: dict[type, frozenset[str] | None] = {}


def _init_options(cls: type) -> frozenset[str] | None:
    """The keyword options a class's __init__ takes (a subclass may add its own); None when
    it takes **kwargs, which then checks them itself."""
    if cls not in _options_of:
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        _options_of[cls] = None if takes_any else frozenset(parameters) - {"self"}
    return _options_of[cls]
