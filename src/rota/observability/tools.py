"""`execute_tool {tool}` spans: the outermost tool middleware (rota.agentloop.chain), so a
call refused by a scope check, a guard or a human is traced too, as an error result."""

from __future__ import annotations

from typing import Any

from ..agents.tools import CallNext, ToolInvocation
from ..agents.types import ToolResult
from ..redaction import redactor
from . import content
from .telemetry import Telemetry


class TracedTools:
    """Tool middleware: a span per call with gen_ai.tool.name and gen_ai.tool.call.id;
    the arguments and the result only with `capture` (redacted)."""

    def __init__(self, telemetry: Telemetry, agent: str, capture: bool) -> None:
        self.telemetry = telemetry
        self.agent = agent
        self.capture = capture

    async def __call__(self, inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        call = inv.call
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.agent.name": self.agent,
        }
        if self.capture:
            attributes["gen_ai.tool.call.arguments"] = content.dumps(call.arguments)
        with self.telemetry.operation(f"execute_tool {call.name}", attributes) as span:
            result = await call_next(inv)
            if self.capture:
                span.set_attribute("gen_ai.tool.call.result", redactor.redact(result.content))
            if result.is_error:
                span.set_attribute("error.type", "tool_error")
            return result
