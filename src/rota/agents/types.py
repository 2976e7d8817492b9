"""The normalised shapes every model provider speaks: rota's agent loop, its record/replay,
metering and tracing see only these, never a provider SDK's own objects.

Every type round-trips through plain JSON (`to_json()` / `from_json()`), because each model
call is a durable step whose request and response are stored with the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

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
class Message:
    """One turn. A user turn carries text and/or the results of the previous tool calls;
    an assistant turn carries text and/or tool calls."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Read from each response's own usage fields; never estimated for real providers."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 1

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))


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


class Model(Protocol):
    """A chat model behind one provider. `complete` raises ProviderError on failures that
    the caller may retry (rate limits, overload, 5xx) and on those it may not."""

    provider: str
    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


def estimate_tokens(chars: int) -> int:
    """A conservative token count for text of this length, before a call (tokenizers average
    about four characters a token for English; three leaves room)."""
    return -(-chars // 3)


def to_json(value: Any) -> Any:
    """A dataclass (or tuple/list of them) as JSON-ready data."""
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return asdict(value)


def message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"],
        text=data.get("text", ""),
        tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls", ())),
        tool_results=tuple(ToolResult(**r) for r in data.get("tool_results", ())),
    )


def response_from_json(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        **{
            **data,
            "tool_calls": tuple(ToolCall(**c) for c in data["tool_calls"]),
            "usage": Usage(**data["usage"]),
        }
    )


def _values(u: Usage) -> tuple[int, ...]:
    return (
        u.input_tokens,
        u.output_tokens,
        u.cache_write_tokens,
        u.cache_read_tokens,
        u.reasoning_tokens,
        u.requests,
    )
