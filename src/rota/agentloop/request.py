"""Model wrappers that shape the request the loop builds, before anything else sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..agents.permissions import ToolAccess
from ..agents.tools import Tool
from ..agents.types import Model, ModelRequest, ModelResponse
from ..redaction import redactor


class RedactedModel:
    """The request without any secret value read in this process: a model never sees one,
    even when a tool returned it or the task carried it."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self.inner.complete(redacted(request))


class PermittedTools:
    """The model is shown only the tools the run's principal may call (read again at each
    call: a revoked scope hides the tool from the next one)."""

    def __init__(self, inner: Model, access: ToolAccess, tools: Mapping[str, Tool]) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.access = access
        self.tools = tools

    async def complete(self, request: ModelRequest) -> ModelResponse:
        visible = tuple(t.spec for t in self.access.visible(self.tools).values())
        if visible != request.tools:  # equal (the usual case): the request needs no copy
            request = replace(request, tools=visible)
        return await self.inner.complete(request)


def redacted(request: ModelRequest) -> ModelRequest:
    if not len(redactor):
        return request
    r = redactor.redact
    messages = tuple(
        replace(
            m,
            text=r(m.text),
            tool_calls=tuple(
                replace(c, arguments=redactor.redact_json(c.arguments)) for c in m.tool_calls
            ),
            tool_results=tuple(replace(t, content=r(t.content)) for t in m.tool_results),
        )
        for m in request.messages
    )
    return replace(request, system=r(request.system), messages=messages)
