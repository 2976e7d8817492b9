"""The step a task is executing, as context variables any layer can read.

The durable step runner (rota.durable) and replay's steps set them with `step_scope`; code
called inside a step reads them: `current_step()` (its idempotency key is stable across
re-executions) and `record_with_checkpoint()` (model calls metered with the step's
checkpoint, in its transaction). Threads copy the caller's context (rota.calls), so both work
in a sync step too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from .errors import RotaError
from .model import ModelCall


@dataclass(frozen=True, slots=True)
class StepInfo:
    run_id: str
    key: str
    attempt: int
    idempotency_key: str


_current_step: ContextVar[StepInfo | None] = ContextVar("rota_current_step", default=None)
# Model calls made by the step being executed, written with its checkpoint.
_step_calls: ContextVar[list[ModelCall] | None] = ContextVar("rota_step_calls", default=None)


@contextmanager
def step_scope(info: StepInfo, calls: list[ModelCall] | None = None) -> Iterator[None]:
    """Execute the body as step `info`: `current_step()` returns it, and when `calls` is
    given, `record_with_checkpoint()` appends to it (left as it is otherwise). Both are reset
    on the way out."""
    token = _current_step.set(info)
    calls_token = None if calls is None else _step_calls.set(calls)
    try:
        yield
    finally:
        if calls_token is not None:
            _step_calls.reset(calls_token)
        _current_step.reset(token)


def record_with_checkpoint(call: ModelCall) -> bool:
    """Have the running step's checkpoint write this model call's metering in its own
    transaction; False outside a step (the caller writes it itself)."""
    calls = _step_calls.get()
    if calls is None:
        return False
    calls.append(call)
    return True


def current_step() -> StepInfo:
    """The step being executed; its idempotency key is stable across re-executions."""
    info = _current_step.get()
    if info is None:
        raise RotaError("current_step() was called outside a step; call it inside ctx.step(...)")
    return info


def active_step() -> StepInfo | None:
    """The step being executed, or None outside a step."""
    return _current_step.get()
