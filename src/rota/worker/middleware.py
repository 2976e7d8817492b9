"""Run middleware: code around each execution of a claimed run.

A worker calls its middleware in order, outermost first, each given the execution (a
`RunCall`) and the rest of the chain (`call_next`); the innermost call runs the job's
function. A middleware returns what `call_next` returned (the function's value), or raises
to fail the execution: the error's `retryable` (default True) decides whether the run is
retried. Some exceptions are not failures and must pass through unchanged: `WaitParked`
(the run parked on a durable wait), `StoreLost` (the database failed under the run: it is
handed back) and `CancelledError` (interrupted: cancelled, lease lost, shutdown).

The standard middleware (`standard()`), which every worker an App makes has, outermost:
`AdmitRunAs` (a run acting as a principal runs only while that principal exists and is
enabled) and `AuditRunStarted` (the run.started audit record). An App adds its own after
them with `app.run_middleware`, so they see admitted runs only, and anything they audit
follows the run's run.started record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..identity.directory import Directory, directory_for
from ..identity.principals import PrincipalDisabled, UnknownPrincipal
from ..identity.runs import run_refused, run_started
from ..jobs import JobDefinition
from ..model import Run
from ..storage.base import PrincipalStore
from ..storage.principals import Principal
from .audit import AuditBatch


@dataclass
class RunCall:
    """One execution of a claimed run, as run middleware sees it."""

    run: Run
    definition: JobDefinition
    db: Callable[..., Awaitable[Any]]  # the worker's database threads: `await call.db(fn, *args)`
    audit: AuditBatch  # audit records written with the worker's next flush
    principal: Principal | None = None  # the principal the run acts as (set by AdmitRunAs)
    # When the job's function began (set by the worker; None until then): the run's compute
    # time is measured from there, not from when the execution was claimed.
    body_started: float | None = None
    # When it returned: the worker's clock, and time.perf_counter() for durations. The
    # worker may let other runs begin before this one's outcome is recorded (a burst of
    # scheduled runs), so times measured after call_next returns would count that wait.
    body_ended: float | None = None
    returned: float | None = None


Execute = Callable[[RunCall], Awaitable[Any]]
"""The rest of the chain: runs the execution and returns the job function's value."""


class RunMiddleware(Protocol):
    """Around each execution of a run. Raise to fail it (the error's `retryable` decides a
    retry); return what call_next returned. Order: outermost first."""

    async def __call__(self, call: RunCall, call_next: Execute) -> Any: ...


class AdmitRunAs:
    """A run that acts as a principal runs only while that principal exists and is enabled.
    Otherwise it is refused: audited (run.refused) and failed for good, without retries,
    with UnknownPrincipal or PrincipalDisabled as its error."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        name = call.run.principal
        if name is not None:
            try:
                call.principal = await call.db(self.directory.require, name)
            except (UnknownPrincipal, PrincipalDisabled) as exc:
                call.audit.append(run_refused(call.run, str(exc)))
                # This refusal is final; the same error raised by a run's own code keeps
                # the default (retried).
                exc.retryable = False
                raise
        return await call_next(call)


class AuditRunStarted:
    """Records the run.started audit record of each execution, written in batches with the
    worker's flushes (a run's own records are written after it)."""

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        call.audit.append(run_started(call.run, call.principal))
        return await call_next(call)


def standard(store: PrincipalStore) -> list[RunMiddleware]:
    """The run middleware every worker has, outermost first: admission, then run.started."""
    return [AdmitRunAs(directory_for(store)), AuditRunStarted()]


def chain(middleware: Sequence[RunMiddleware], execute: Execute) -> Execute:
    """`execute` wrapped in `middleware`, the first one outermost."""
    for outer in reversed(middleware):
        execute = _bind(outer, execute)
    return execute


def _bind(middleware: RunMiddleware, call_next: Execute) -> Execute:
    async def execute(call: RunCall) -> Any:
        return await middleware(call, call_next)

    return execute
