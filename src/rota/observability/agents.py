"""`invoke_agent {agent}` spans: around one run of the agent loop (rota.agentloop.agent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..agents.types import AgentResult, Model
from .chat import provider_name
from .telemetry import Telemetry


def traced_agent(
    telemetry: Telemetry, agent: str, model: Model, run: Callable[[], Awaitable[AgentResult]]
) -> Callable[[], Awaitable[AgentResult]]:
    """`run` (one run of the loop) inside an invoke_agent span, with the run's summed usage."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "gen_ai.provider.name": provider_name(model.provider),
        "gen_ai.request.model": model.name,
    }

    async def traced() -> AgentResult:
        with telemetry.span(f"invoke_agent {agent}", attributes) as span:
            result = await run()
            usage = result.usage
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.input_tokens
                    + usage.cache_read_tokens
                    + usage.cache_write_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
                    "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                    "rota.agent.reason": str(result.reason),
                    "rota.agent.steps": result.steps,
                }
            )
            if not result.ok:
                span.set_attribute("error.type", str(result.reason))
            return result

    return traced
