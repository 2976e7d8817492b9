"""The durable steps of an agent run: each model call and each tool call is a step of the
run (`model#1`, `tool:NAME`, ...); in memory, tool calls get keys of their own.

A model step stores the `ModelResponse` and, under its "request" key, the normalised request
(see `request_record`), so that `rota.agentloop.replay` can tell where a new code path would
ask the model something else. A resumed run gets the response back from its checkpoint, and
since the loop decides only from those results, it takes the same path again, up to the
first call that had not completed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..agents.tools import Tool, ToolContext, ToolMiddleware, run_tool
from ..agents.types import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    response_from_json,
    to_json,
)
from ..durable import DurableContext
from ..ids import new_id

ContextFor = Callable[[ToolCall, str], ToolContext[Any]]
"""The ToolContext of a call, given its idempotency key."""


class DurableModel:
    """Each call is the step `{prefix}model#{n}`, n counting the calls made through it."""

    def __init__(self, inner: Model, ctx: DurableContext, prefix: str) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.ctx = ctx
        self.prefix = prefix
        self.calls = 0
        self._sent: tuple[Message, ...] = ()  # the messages of the previous request

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        record = request_record(request, self._sent)
        self._sent = request.messages

        async def complete() -> dict[str, Any]:
            data: dict[str, Any] = to_json(await self.inner.complete(request))
            return {**data, "request": record}

        data = await self.ctx.step(f"{self.prefix}model#{self.calls}", complete)
        # Checkpoints written before requests were recorded have no "request" key.
        return response_from_json({k: v for k, v in data.items() if k != "request"})


def request_record(request: ModelRequest, sent: tuple[Message, ...]) -> dict[str, Any]:
    """The request as stored with its model step. The conversation only grows, so only the
    messages added since the previous request are stored (`messages` from index
    `messages_from`): the whole conversation at every step would grow quadratically. Should
    the history ever be rewritten, the whole of it is stored (`messages_from` 0)."""
    start = len(sent) if request.messages[: len(sent)] == sent else 0
    data: dict[str, Any] = to_json(replace(request, messages=request.messages[start:]))
    return {**data, "messages_from": start}


class DurableTools:
    """Each tool call is the step `{prefix}tool:{name}`: validated, then the middleware,
    outermost first, around the tool; the ToolContext's idempotency key is the step's."""

    def __init__(
        self,
        ctx: DurableContext,
        prefix: str,
        tools: Mapping[str, Tool],
        context: ContextFor,
        middleware: Sequence[ToolMiddleware],
    ) -> None:
        self.ctx = ctx
        self.prefix = prefix
        self.tools = tools
        self.context = context
        self.middleware = middleware

    async def __call__(self, call: ToolCall) -> ToolResult:
        tool = self.tools[call.name]

        async def invoke() -> dict[str, Any]:
            context = self.context(call, self.ctx.idempotency_key)  # stable across resumes
            data: dict[str, Any] = to_json(await run_tool(tool, call, context, self.middleware))
            return data

        data = await self.ctx.step(f"{self.prefix}tool:{call.name}", invoke)
        return ToolResult(**data)


class LocalTools:
    """Tool calls of a run in memory: keys `local-<id>:{prefix}tool:{name}`, then `#2`, ...
    for the same tool's later calls."""

    def __init__(
        self,
        prefix: str,
        tools: Mapping[str, Tool],
        context: ContextFor,
        middleware: Sequence[ToolMiddleware],
    ) -> None:
        self.local_id = f"local-{new_id()}"
        self.prefix = prefix
        self.tools = tools
        self.context = context
        self.middleware = middleware
        self._keys: dict[str, int] = {}

    async def __call__(self, call: ToolCall) -> ToolResult:
        tool = self.tools[call.name]
        name = f"{self.prefix}tool:{call.name}"
        count = self._keys.get(name, 0) + 1
        self._keys[name] = count
        key = f"{self.local_id}:{name}" + (f"#{count}" if count > 1 else "")
        result = await run_tool(tool, call, self.context(call, key), self.middleware)
        return ToolResult(**to_json(result))
