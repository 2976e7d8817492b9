"""OpenTelemetry traces and GenAI metrics for rota, as wrappers the composition roots install.

A run is a `rota.run {name}` span (run middleware), each durable step a `rota.step {key}`
span (the kernel's step observer), an agent run `invoke_agent {agent}`, each model call
`chat {model}` (a Model wrapper) and each tool call `execute_tool {tool}` (tool middleware),
with the GenAI semantic conventions' attributes, and the metrics gen_ai.client.token.usage
and gen_ai.client.operation.duration. A run stores the trace context it continues
(`trace_context`: a webhook's `traceparent`, or the run that escalated to it), so one trace
covers webhook -> job -> escalation -> agent -> approval across worker processes.

When tracing is off (settings.active() is None: no OTLP variables, no provider) each
function here hands back what it was given or nothing, and OpenTelemetry is never imported:
the wrappers cost nothing. See docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..agents.tools import ToolMiddleware
from ..agents.types import AgentResult, Model
from .settings import active, capture_content, configure
from .traceparent import incoming

__all__ = [
    "active",
    "configure",
    "current_traceparent",
    "run_middleware",
    "tool_middleware",
    "traced_agent",
    "traced_model",
    "webhook_span",
]


def traced_model(model: Model, agent: str) -> Model:
    """`model` with a chat span per call (the bottom of an agent's model chain)."""
    telemetry = active()
    if telemetry is None:
        return model
    from .chat import TracedModel  # noqa: PLC0415  # heavy: opentelemetry

    return TracedModel(model, telemetry, agent, capture_content())


def tool_middleware(agent: str) -> tuple[ToolMiddleware, ...]:
    """The tool middleware that traces each call (outermost), or none."""
    telemetry = active()
    if telemetry is None:
        return ()
    from .tools import TracedTools  # noqa: PLC0415  # heavy: opentelemetry

    return (TracedTools(telemetry, agent, capture_content()),)


def traced_agent(
    agent: str, model: Model, run: Callable[[], Awaitable[AgentResult]]
) -> Callable[[], Awaitable[AgentResult]]:
    """`run` (one run of the agent loop) inside an invoke_agent span, or `run` itself."""
    telemetry = active()
    if telemetry is None:
        return run
    from .agents import traced_agent as traced  # noqa: PLC0415  # heavy: opentelemetry

    return traced(telemetry, agent, model, run)


def run_middleware() -> list[Any]:
    """The run middleware that traces each execution (outermost), or none."""
    telemetry = active()
    if telemetry is None:
        return []
    from .runs import TracedRuns  # noqa: PLC0415  # heavy: opentelemetry

    return [TracedRuns(telemetry)]


def current_traceparent() -> str | None:
    """The traceparent of the current span (for a run enqueued now), or None."""
    if active() is None:
        return None
    from .propagation import current  # noqa: PLC0415  # heavy: opentelemetry

    return current()


@contextmanager
def webhook_span(name: str, headers: Mapping[str, str]) -> Iterator[str | None]:
    """Around receiving a webhook delivery: yields the trace context its runs continue.
    Traced, a `rota.webhook {name}` span in the sender's trace (its `traceparent` header);
    not traced, the sender's traceparent itself when it is well formed, so that traced
    workers still continue the sender's trace; else None."""
    telemetry = active()
    if telemetry is None:
        yield incoming(headers)
        return
    from . import propagation  # noqa: PLC0415  # heavy: opentelemetry

    parent = propagation.parent(incoming(headers))
    attributes = {"rota.webhook.name": name}
    with telemetry.span(f"rota.webhook {name}", attributes, parent=parent):
        yield propagation.current()
