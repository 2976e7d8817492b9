"""The step a task is executing, as context variables any layer can read.

The durable step runner (rota.durable) and replay's steps set them with `step_scope`; code
called inside a step reads them: `current_step()` (its idempotency key is stable across
re-executions) and `record_with_checkpoint()` (model calls metered with the step's
checkpoint, in its transaction). Threads copy the caller's context (rota.calls), so both work
in a sync step too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass

from .errors import RotaError
from .model import ModelCall


@dataclass(frozen=True, slots=True)
class StepInfo:
    """The step being executed, for code deep inside it (`current_step()`): its idempotency key
    stays the same across retries, so an outside call made with it happens once."""

    run_id: str
    key: str
    attempt: int
    idempotency_key: str


_current_step: ContextVar[StepInfo | None] = ContextVar("rota_current_step", default=None)
# Model calls made by the step being executed, written with its checkpoint.
_step_calls: ContextVar[list[ModelCall] | None] = ContextVar("rota_step_calls", default=None)

StepObserver = Callable[[StepInfo], AbstractContextManager[object]]
"""Around each execution of a step's body (e.g. a trace span): given the step, returns a
context manager that the body runs inside."""


def _unobserved(info: StepInfo) -> AbstractContextManager[object]:
    return nullcontext()


# What observes the steps of the run being executed (set by run middleware, for that run).
_step_observer: ContextVar[StepObserver] = ContextVar("rota_step_observer", default=_unobserved)


@contextmanager
def observing_steps(observer: StepObserver) -> Iterator[None]:
    """Have `observer` around every step body executed inside the block, inside the
    observers already set (tracing and metrics each observe the same steps)."""
    outer = _step_observer.get()
    token = _step_observer.set(observer if outer is _unobserved else _nested(outer, observer))
    try:
        yield
    finally:
        _step_observer.reset(token)


def _nested(outer: StepObserver, inner: StepObserver) -> StepObserver:
    @contextmanager
    def both(info: StepInfo) -> Iterator[None]:
        with outer(info), inner(info):
            yield

    return both


@contextmanager
def step_scope(info: StepInfo, calls: list[ModelCall] | None = None) -> Iterator[None]:
    """Execute the body as step `info`: `current_step()` returns it, and when `calls` is
    given, `record_with_checkpoint()` appends to it (left as it is otherwise). Both are reset
    on the way out. The step observer of the run (`observing_steps`) is around the body."""
    token = _current_step.set(info)
    calls_token = None if calls is None else _step_calls.set(calls)
    try:
        with _step_observer.get()(info):
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
