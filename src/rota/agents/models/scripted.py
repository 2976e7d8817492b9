"""The offline model: replies come from a script, not a provider. For tests and the demo.

A ScriptedModel answers each call with the next entry of its script, or with what its
function returns. Every response is marked `simulated=True` (provider "scripted"): its
latency and token counts are made up, deterministic, and must never be read as real usage.

The script is indexed by the call's position *in its conversation* (the number of assistant
turns already in the request, plus one), not by a global counter: one registered model can
serve many runs at once, and a run that resumes after a crash gets the same reply for the
same turn. `model.calls` still counts every call made, across conversations.

Models are registered by name so that `Agent(model="scripted:NAME")` finds them.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
import pydantic_core

from ...errors import ProviderError, UnknownModel
from ..types import Model, ModelRequest, ModelResponse, StopReason, ToolCall, Usage


@dataclass(frozen=True)
class Reply:
    """One scripted assistant turn: text and/or tool calls. `say("..") + call("tool")`
    combines turns into one."""

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    stop_reason: StopReason | None = None  # default: tool_use with calls, else end_turn

    def __add__(self, other: Reply) -> Reply:
        text = "\n".join(t for t in (self.text, other.text) if t)
        return Reply(text, self.tool_calls + other.tool_calls, other.stop_reason)


def say(text: str) -> Reply:
    """A plain text reply (a final answer when the agent has no output type)."""
    return Reply(text=text)


def call(tool: Any, /, **arguments: Any) -> Reply:
    """A reply that calls `tool` (a name or a @tool) with these arguments."""
    name = tool if isinstance(tool, str) else getattr(tool, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"call() needs a tool or a tool name, got {tool!r}")
    return Reply(tool_calls=((name, arguments),))


def answer(value: Any) -> Reply:
    """A structured final answer: a pydantic model, dict, list ... sent as JSON text."""
    if isinstance(value, pydantic.BaseModel):
        return Reply(text=value.model_dump_json())
    return Reply(text=pydantic_core.to_json(value).decode())


ScriptEntry = Reply | str | BaseException | Callable[[ModelRequest], Any]
ReplyFn = Callable[[ModelRequest, int], Any]
Tokens = tuple[int, int] | Callable[[ModelRequest, Reply], tuple[int, int]]


class ScriptedModel:
    """`ScriptedModel("demo", script=[call("lookup", id=1), answer({...})])`, or
    `ScriptedModel("demo", fn=lambda request, call_no: ...)`.

    A script entry (or what `fn` returns) may be a Reply, a string (said as text), an
    exception (raised, e.g. ProviderError to simulate an outage: at that turn it is raised
    on every call), a callable taking the request, or any other value (sent as a
    structured answer). `latency` is seconds, or a (low, high) range drawn from a seeded
    generator; `tokens` fixes (input, output) per call, or computes it.
    """

    provider = "scripted"

    def __init__(
        self,
        name: str = "scripted",
        script: Sequence[ScriptEntry] | None = None,
        *,
        fn: ReplyFn | None = None,
        latency: float | tuple[float, float] = 0.0,
        tokens: Tokens | None = None,
        seed: int | str | None = None,
    ) -> None:
        if (script is None) == (fn is None):
            raise TypeError("ScriptedModel needs script=[...] or fn=..., and not both")
        self.name = name
        self.script = list(script) if script is not None else None
        self.fn = fn
        self.latency = latency
        self.tokens = tokens
        self.calls = 0
        self.requests: list[ModelRequest] = []
        self._random = random.Random(name if seed is None else seed)

    def __repr__(self) -> str:
        return f"<ScriptedModel {self.name} calls={self.calls}>"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.requests.append(request)
        turn = 1 + sum(1 for m in request.messages if m.role == "assistant")
        delay = self._delay()
        if delay:
            await asyncio.sleep(delay)
        reply = self._reply(request, turn)
        usage_in, usage_out = self._tokens(request, reply)
        calls = tuple(
            ToolCall(f"call_{turn}_{i}", name, dict(args))
            for i, (name, args) in enumerate(reply.tool_calls, start=1)
        )
        return ModelResponse(
            text=reply.text,
            tool_calls=calls,
            stop_reason=reply.stop_reason or ("tool_use" if calls else "end_turn"),
            usage=Usage(input_tokens=usage_in, output_tokens=usage_out),
            model=self.name,
            provider=self.provider,
            request_id=f"scripted-{self.name}-{self.calls}",
            simulated=True,
            extra={"latency_s": round(delay, 6), "turn": turn},
        )

    def _reply(self, request: ModelRequest, turn: int) -> Reply:
        if self.fn is not None:
            entry: Any = self.fn(request, turn)
        else:
            assert self.script is not None
            if turn > len(self.script):
                raise ProviderError(
                    self.provider,
                    f"model {self.name!r} has no reply for turn {turn}: its script has "
                    f"{len(self.script)}; add replies or end with say()/answer()",
                )
            entry = self.script[turn - 1]
            if callable(entry) and not isinstance(entry, Reply):
                entry = entry(request)
        return _as_reply(entry)

    def _delay(self) -> float:
        if isinstance(self.latency, tuple):
            low, high = self.latency
            return self._random.uniform(low, high)
        return float(self.latency)

    def _tokens(self, request: ModelRequest, reply: Reply) -> tuple[int, int]:
        if callable(self.tokens):
            return self.tokens(request, reply)
        if self.tokens is not None:
            return self.tokens
        # Made up: about four characters a token, as for English text with real tokenizers.
        sent = len(request.system) + sum(
            len(m.text)
            + len(json.dumps([c.arguments for c in m.tool_calls]))
            + sum(len(r.content) for r in m.tool_results)
            for m in request.messages
        )
        sent += len(json.dumps([t.input_schema for t in request.tools]))
        said = len(reply.text) + len(json.dumps(reply.tool_calls))
        return 1 + math.ceil(sent / 4), 1 + math.ceil(said / 4)


def _as_reply(entry: Any) -> Reply:
    if isinstance(entry, Reply):
        return entry
    if isinstance(entry, BaseException):
        raise entry
    if isinstance(entry, str):
        return say(entry)
    return answer(entry)


# -- registry ----------------------------------------------------------------------------

_registry: dict[str, Model] = {}
_lock = threading.Lock()


def register_scripted(name: str, model: Model | None = None, **options: Any) -> Model:
    """Make `scripted:NAME` resolve to `model` (or to `ScriptedModel(name, **options)`);
    registering a name again replaces it."""
    if not name or ":" in name:
        raise ValueError(f"a scripted model name must be non-empty without ':', got {name!r}")
    found = model if model is not None else ScriptedModel(name, **options)
    with _lock:
        _registry[name] = found
    return found


def unregister_scripted(name: str) -> None:
    with _lock:
        _registry.pop(name, None)


def get_scripted(name: str) -> Model:
    with _lock:
        found = _registry.get(name)
        known = sorted(_registry)
    if found is None:
        listed = ", ".join(known) if known else "none are registered"
        raise UnknownModel(
            f"scripted:{name}",
            f"no scripted model named {name!r} (registered: {listed}); register one first "
            "with rota.testing.register_scripted(name, ScriptedModel(...))",
        )
    return found
