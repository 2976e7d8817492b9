"""The tracer, the GenAI metrics and the one way rota opens a span.

A span never carries an exception's traceback or a message that was not redacted: an error
sets `error.type` and a redacted status description. Control flow that is not a failure (a
run parking on a wait, an interrupted attempt, a cancelled task) marks the span
`rota.interrupted` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode

from ..errors import RunInterrupted
from ..redaction import redactor
from ..version import __version__

Attributes = Mapping[str, Any]

# The span of the durable step being executed (Telemetry.operation may take it over).
_step_span: ContextVar[Span | None] = ContextVar("rota_step_span", default=None)

# Bucket boundaries the GenAI semantic conventions advise for these two histograms.
_TOKEN_BUCKETS = [4**i for i in range(14)]
_DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]


class Telemetry:
    """rota's tracer and GenAI histograms, from the providers given (None: the global).
    `owned`: rota built the providers (from the OTLP variables) and shuts them down."""

    def __init__(
        self, tracer_provider: Any = None, meter_provider: Any = None, *, owned: bool = False
    ) -> None:
        self.providers = (tracer_provider, meter_provider)
        self.owned = owned
        self.tracer = trace.get_tracer("rota", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("rota", __version__, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def flush(self) -> None:
        """Export what is buffered now (spans, and metrics collected so far)."""
        for provider in self.providers:
            if hasattr(provider, "force_flush"):
                provider.force_flush()

    def close(self) -> None:
        """Flush, and shut down the providers rota built (never a provider it was given)."""
        self.flush()
        for provider in self.providers if self.owned else ():
            provider.shutdown()

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Current:
        """A span, current while the block runs, ended with the block's outcome."""
        span = self.tracer.start_span(name, parent, kind, attributes)
        return Current(span)

    def step_span(self, name: str, attributes: Attributes) -> Current:
        """A durable step's span: named for the step until what it does names it (see
        `operation`)."""
        return StepCurrent(self.tracer.start_span(name, None, SpanKind.INTERNAL, attributes))

    def operation(self, name: str, attributes: Attributes) -> AbstractContextManager[Span]:
        """The span of one operation (a model call, a tool call). When it is the whole body
        of a durable step (the step's span is the current span), it is that step's span,
        renamed: one span per step, not two nested ones that say the same thing. Else a new
        span."""
        step = _step_span.get()
        if step is not None and trace.get_current_span() is step:
            step.update_name(name)
            step.set_attributes(attributes)
            return nullcontext(step)
        return self.span(name, attributes)


class Current:
    """A started span made current for a `with` block, then ended with its outcome. (A
    class, not nested generator context managers: this runs several times per model call.)"""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        try:
            if exc is None:
                pass
            elif isinstance(exc, RunInterrupted | asyncio.CancelledError | GeneratorExit):
                span.set_attribute("rota.interrupted", type(exc).__name__)
            else:
                failed(span, exc)
        finally:
            context.detach(self._token)
            span.end()


class StepCurrent(Current):
    """A step's span, which an operation in the step's body may take over (`operation`)."""

    __slots__ = ("_step_token",)

    def __enter__(self) -> Span:
        self._step_token = _step_span.set(self._span)
        return super().__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(kind, exc, tb)
        finally:
            _step_span.reset(self._step_token)


def failed(span: Span, exc: BaseException) -> None:
    """Mark a span failed by `exc`: its type and its redacted message, no traceback."""
    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, redactor.redact(str(exc))[:1000]))


def installed_globally() -> Telemetry | None:
    """The process's own tracer provider, when something installed one; else None."""
    if isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
        return None
    return Telemetry()
