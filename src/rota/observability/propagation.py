"""W3C trace context as rota stores it with a run: the `traceparent` header's value."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()


def parent(traceparent: str | None) -> Context | None:
    """The context a stored traceparent continues (None: a new trace)."""
    if traceparent is None:
        return None
    return _W3C.extract({"traceparent": traceparent})


def current() -> str | None:
    """The traceparent of the current span, or None outside any recording span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")
