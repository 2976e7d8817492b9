"""`rota.run {name}` spans (run middleware) and a span per durable step (the kernel's step
observer, rota.runtime.observing_steps), continuing the trace stored with the run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import SpanKind

from ..runtime import StepInfo, observing_steps
from . import propagation
from .telemetry import Telemetry


class TracedRuns:
    """Run middleware (rota.worker.middleware): each execution of a run is a span in the
    trace stored with the run (`trace_context`, e.g. the webhook that caused it), parent of
    everything the run does, its steps' spans included. A run that parks on a wait ends
    its span marked `rota.interrupted`; its next execution is a new span of the same trace."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def __call__(self, call: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        run = call.run
        attributes = {
            "rota.run.id": run.id,
            "rota.run.name": run.name,
            "rota.run.kind": run.kind,
            "rota.run.trigger": run.trigger,
            "rota.run.attempt": run.attempt,
        }
        if run.parent_id is not None:
            attributes["rota.run.parent_id"] = run.parent_id
        with (
            self.telemetry.span(
                f"rota.run {run.name}",
                attributes,
                parent=propagation.parent(run.trace_context),
                kind=SpanKind.CONSUMER,
            ),
            observing_steps(self.step),
        ):
            return await call_next(call)

    def step(self, info: StepInfo) -> AbstractContextManager[object]:
        return _step_span(self.telemetry, info)


def _step_span(telemetry: Telemetry, info: StepInfo) -> AbstractContextManager[object]:
    """The step's span (its run is the parent span's)."""
    attributes = {"rota.step.key": info.key, "rota.step.attempt": info.attempt}
    return telemetry.step_span(f"rota.step {info.key}", attributes)
