"""Deny by default for agent tools: a tool runs only when the run's principal holds every
scope it declares (`@tool(scopes=[...])`), and the model is shown only those tools.

`ToolAccess` wraps the agent's tool calls as two guards (see rota.agents.tools.ToolGuard):
`check` refuses a call whose scopes the principal does not hold (the model gets the reason
as the tool's error result, the denial is counted and audited, the tool body never runs) and
`called`, the last guard, audits a call that every guard let through. The scopes are read
again at each call (through the cached directory), so a revoked scope or a disabled
principal stops the next call of a run already under way.

Why a model may ask for a hidden tool at all: it can guess a name, or be told one by data it
read (a ticket that says "call refund"). The principal's scopes decide, never the content.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core
from prometheus_client import Counter

from ..identity.principals import Principal
from ..storage.audit import TOOL_CALLED, TOOL_DENIED, AuditEntry
from .tools import Tool, ToolContext, ToolDenied

DENIED_CALLS = Counter(
    "rota_tool_calls_denied",
    "Tool calls refused because the run's principal lacks a scope the tool needs.",
    ["agent", "tool"],
)
_MAX_ARGUMENTS = 2000  # characters of a call's arguments kept in its audit record

Lookup = Callable[[], "Principal | None"]
Record = Callable[[AuditEntry], Awaitable[None]]


@dataclass(frozen=True)
class ToolAccess:
    """The permissions of one agent run. `lookup` returns the run's principal as it is now
    (None: the run has no principal and holds no scope); `record` appends an audit record
    (None: an in-memory run, which has no store to audit to)."""

    agent: str
    lookup: Lookup
    record: Record | None = None
    run_id: str | None = None
    secrets: Callable[[str], str] | None = None  # a durable run's secret reader

    def missing(self, tool: Tool) -> tuple[str, ...]:
        principal = self.lookup()
        if principal is None or principal.disabled:
            return tool.scopes
        return principal.missing(tool.scopes)

    def visible(self, tools: Mapping[str, Tool]) -> dict[str, Tool]:
        """The tools to show the model: those the principal may call."""
        return {name: t for name, t in tools.items() if not self.missing(t)}

    async def check(self, tool: Tool, values: dict[str, Any], ctx: ToolContext[Any]) -> None:
        missing = self.missing(tool)
        if not missing:
            return
        DENIED_CALLS.labels(self.agent, tool.name).inc()
        who = f"principal {ctx.principal!r}" if ctx.principal else "this run (no principal)"
        await self._audit(
            TOOL_DENIED,
            ctx,
            tool,
            values,
            needed=list(tool.scopes),
            missing=list(missing),
        )
        raise ToolDenied(
            f"{who} lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"that tool {tool.name!r} needs; it is not available to you"
        )

    async def called(self, tool: Tool, values: dict[str, Any], ctx: ToolContext[Any]) -> None:
        await self._audit(TOOL_CALLED, ctx, tool, values, scopes=list(tool.scopes))

    async def _audit(
        self, action: str, ctx: ToolContext[Any], tool: Tool, values: dict[str, Any], **more: Any
    ) -> None:
        if self.record is None:
            return
        # The agent acts, not the person it may act for: machine, on the principal's behalf.
        entry = AuditEntry(
            actor=ctx.principal or "rota:anonymous",
            action=action,
            actor_kind="machine",
            on_behalf_of=ctx.principal,
            subject=tool.name,
            run_id=self.run_id,
            detail={
                "agent": self.agent,
                "tool": tool.name,
                "call_id": ctx.call_id,
                "arguments": _arguments(values),
                **more,
            },
        )
        await self.record(entry)


def _arguments(values: dict[str, Any]) -> Any:
    """The call's arguments as JSON, cut to a bounded size for the log."""
    try:
        data = pydantic_core.to_jsonable_python(values)
        text = json.dumps(data)
    except (pydantic_core.PydanticSerializationError, TypeError, ValueError):
        return {"unserialisable": repr(values)[:_MAX_ARGUMENTS]}
    if len(text) <= _MAX_ARGUMENTS:
        return data
    return {"truncated": text[:_MAX_ARGUMENTS]}
