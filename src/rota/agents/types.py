"""The normalised shapes every model provider speaks: rota's agent loop, its record/replay,
metering and tracing see only these, never a provider SDK's own objects.

Every type round-trips through plain JSON (`to_json()` / `from_json()`), because each model
call is a durable step whose request and response are stored with the run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, Protocol

from ..errors import AgentFailed
from ..model import TokenCounts

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, and a JSON Schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Thinking:
    """One block of a model's reasoning, as the provider returned it. `signature` proves
    the text unaltered: Anthropic wants the block back, signature and all, at the start of
    the assistant turn it came with. A redacted block has no text, only encrypted `data`."""

    text: str = ""
    signature: str = ""
    data: str = ""  # set only for a redacted block


@dataclass(frozen=True)
class Message:
    """One turn. A user turn carries text and/or the results of the previous tool calls;
    an assistant turn carries text and/or tool calls, and the thinking that preceded them."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    thinking: tuple[Thinking, ...] = ()


# Read from each response's own usage fields; never estimated for real providers.
Usage = TokenCounts


@dataclass(frozen=True)
class ModelRequest:
    model: str  # the provider's model name, without the "provider:" prefix
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    output_schema: dict[str, Any] | None = None  # JSON Schema of a structured final answer


StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal", "other"]


@dataclass(frozen=True)
class ModelResponse:
    text: str
    tool_calls: tuple[ToolCall, ...]
    stop_reason: StopReason
    usage: Usage
    model: str  # as the provider reported it
    provider: str
    request_id: str | None = None
    simulated: bool = False  # scripted/offline models: latency and tokens are made up
    extra: dict[str, Any] = field(default_factory=dict)
    thinking: tuple[Thinking, ...] = ()  # reasoning blocks, in the order they came


class Model(Protocol):
    """A chat model behind one provider. `complete` raises ProviderError on failures that
    the caller may retry (rate limits, overload, 5xx) and on those it may not."""

    provider: str
    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


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


def estimate_tokens(chars: int) -> int:
    """A conservative token count for text of this length, before a call (tokenizers average
    about four characters a token for English; three leaves room)."""
    return -(-chars // 3)


def to_json(value: Any) -> Any:
    """A dataclass (or tuple/list of them) as JSON-ready data."""
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return _as_data(value)


# What dataclasses.asdict(value, dict_factory=_without_empty_thinking) returns, made without
# its per-call field introspection and its deep copy of every str and int: this runs several
# times per model call on the whole conversation (measured: a third of a millisecond a call).
_SCALARS = (str, int, float, bool, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _as_data(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {_as_data(k): _as_data(v) for k, v in value.items()}
    if kind is tuple or kind is list:
        return kind([_as_data(v) for v in value])
    names = _FIELD_NAMES.get(kind)
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        data = {}
        for name in names:
            item = getattr(value, name)
            if name != "thinking" or item:  # see _without_empty_thinking
                data[name] = _as_data(item)
        return data
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return kind(*[_as_data(v) for v in value])
    if isinstance(value, list | tuple):
        return kind(_as_data(v) for v in value)
    if isinstance(value, dict):
        return kind((_as_data(k), _as_data(v)) for k, v in value.items())
    return copy.deepcopy(value)


def _without_empty_thinking(items: list[tuple[str, Any]]) -> dict[str, Any]:
    # Most turns have no thinking: leaving the empty field out keeps stored steps, and the
    # request-size bound that budgets reserve (prompt_bound), what they were before thinking
    # was kept. The readers default a missing field to ().
    return {key: value for key, value in items if key != "thinking" or value}


def message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        text=data.get("text", ""),
        tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls", ())),
        tool_results=tuple(ToolResult(**r) for r in data.get("tool_results", ())),
        thinking=tuple(Thinking(**t) for t in data.get("thinking", ())),
    )


def response_from_json(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        **{
            **data,
            "tool_calls": tuple(ToolCall(**c) for c in data["tool_calls"]),
            "usage": Usage(**data["usage"]),
            # Checkpoints written before thinking was kept have none.
            "thinking": tuple(Thinking(**t) for t in data.get("thinking", ())),
        }
    )


# -- the prompt bound: the most prompt tokens a request can be counted, before it is sent ----

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
