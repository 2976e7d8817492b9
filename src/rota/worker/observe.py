"""`ObserveRuns`: the run middleware that makes each execution visible from outside.

Outermost in every App's worker (so a run refused by admission counts as failed too), it
- names the run in every log line written while it executes (rota.observability.logs);
- counts it: `rota_runs_finished_total` when it ends for good, `rota_run_retries_total` for
  a failed attempt that will be retried, and its wall time in `rota_run_duration_seconds`;
- times each durable step it executes (`rota_step_duration_seconds`), as a step observer
  of the kernel (rota.runtime.observing_steps);
- logs one line for a run that succeeded, with its duration and, for an agent, what its
  model calls cost (the worker already logs each failure and retry, and durable waits log
  their parking).

Whether a failure is final is decided as the worker decides it: the error's `retryable`
(default True) and the attempts left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..cost.pricing import from_pusd
from ..durable import WaitParked
from ..errors import RunInterrupted, StoreLost
from ..model import Run
from ..observability.logs import run_fields
from ..observability.metrics import RUN_DURATION, RUN_RETRIES, RUNS_FINISHED, STEP_DURATION
from ..runtime import StepInfo, StepObserver, observing_steps
from ..storage.base import MeteringStore
from .middleware import Execute, RunCall

log = logging.getLogger("rota.run")


class ObserveRuns:
    """Metrics, log context and the success line of each execution (module docstring)."""

    def __init__(self, store: MeteringStore) -> None:
        self.store = store

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        run = call.run
        started = time.perf_counter()
        outcome = "interrupted"
        with run_fields(run.id, run.name, run.principal), observing_steps(_step_timer(run)):
            try:
                value = await call_next(call)
                outcome = "succeeded"
            except WaitParked:
                outcome = "parked"
                raise
            except (RunInterrupted, StoreLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                outcome = "failed" if _final(run, exc) else "retried"
                raise
            finally:
                _count(run, outcome, time.perf_counter() - started)
            await self._succeeded(call, time.perf_counter() - started)
        return value

    async def _succeeded(self, call: RunCall, seconds: float) -> None:
        run = call.run
        cost = ""
        if run.kind == "agent":
            cost = await self._cost(call)
        log.info("run %s of %s SUCCEEDED in %s%s", run.id, run.name, _span(seconds), cost)

    async def _cost(self, call: RunCall) -> str:
        try:
            calls = await call.db(self.store.model_calls, call.run.id)
        except (Exception, StoreLost):  # the run succeeded; only its log line goes without
            return ""
        usd = from_pusd(sum(c.cost_pusd for c in calls))
        return f", {len(calls)} model call{'s' if len(calls) != 1 else ''}, ${usd:.4f}"


def _step_timer(run: Run) -> StepObserver:
    """Times each execution of a step body of `run` into rota_step_duration_seconds, by its
    name (`load`, not `load#2`): succeeded, failed (it raised) or interrupted."""

    @contextmanager
    def timed(info: StepInfo) -> Iterator[None]:
        started, state = time.perf_counter(), "interrupted"
        try:
            yield
            state = "succeeded"
        except Exception:
            state = "failed"
            raise
        finally:
            step = info.key.partition("#")[0]
            STEP_DURATION.labels(run.name, step, state).observe(time.perf_counter() - started)

    return timed


def _final(run: Run, exc: Exception) -> bool:
    return not getattr(exc, "retryable", True) or run.failures + 1 >= run.max_attempts


def _count(run: Run, outcome: str, seconds: float) -> None:
    RUN_DURATION.labels(run.name, run.kind, outcome).observe(seconds)
    if outcome == "succeeded":
        RUNS_FINISHED.labels(run.name, run.kind, "SUCCEEDED").inc()
    elif outcome == "failed":
        RUNS_FINISHED.labels(run.name, run.kind, "FAILED").inc()
    elif outcome == "retried":
        RUN_RETRIES.labels(run.name, run.kind).inc()


def _span(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"
