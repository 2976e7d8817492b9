"""`ObserveRuns`: the run middleware that makes each execution visible from outside.

Outermost in every App's worker (so a run refused by admission counts as failed too), it
- names the run in every log line written while it executes (rota.observability.logs);
- counts it: `rota_runs_finished_total` when it ends for good, `rota_run_retries_total` for
  a failed attempt that will be retried, and its wall time in `rota_run_duration_seconds`;
- times each durable step it executes (`rota_step_duration_seconds`), as a step observer
  of the kernel (rota.runtime.observing_steps);
- logs one line for a run that succeeded, with its duration and, for an agent, what its
  model calls cost (the worker already logs each failure and retry, and durable waits log
  their parking). Up to `SUCCESS_LINES_PER_S` such lines a second: past that (a drain of
  short jobs) the rest of the second's successes are counted and told in one summary line,
  because formatting and writing a line per run cost a third of a busy worker's CPU
  (docs/scaling.md). Each one still goes to DEBUG. `rota dev`, and any worker that is not
  busy, shows every run.

Whether a failure is final is decided as the worker decides it: the error's `retryable`
(default True) and the attempts left.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Histogram

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
SUCCESS_LINES_PER_S = 20  # success lines at INFO in any one second; the rest are summed up
# Set on the records of success lines and their summaries (LogRecord.rota_event), so that a
# front end printing runs its own way (`rota dev`) can leave them out.
SUCCESS_EVENT = "run.succeeded"
_TAGGED = {"rota_event": SUCCESS_EVENT}


class ObserveRuns:
    """Metrics, log context and the success line of each execution (module docstring)."""

    def __init__(self, store: MeteringStore, lines_per_s: int = SUCCESS_LINES_PER_S) -> None:
        self.store = store
        self.lines = SuccessLines(lines_per_s)

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        run = call.run
        started = time.perf_counter()
        outcome = "interrupted"
        with run_fields(run.id, run.name, run.principal), observing_steps(_step_timer(run.name)):
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
                seconds = (call.returned or time.perf_counter()) - started
                _count(run, outcome, seconds)
            await self._succeeded(call, seconds)
        return value

    async def _succeeded(self, call: RunCall, seconds: float) -> None:
        level = self.lines.level()
        if not log.isEnabledFor(level):  # nobody reads it: no line, and no cost query for it
            return
        run = call.run
        cost = ""
        if run.kind == "agent":
            cost = await self._cost(call)
        line = "run %s of %s SUCCEEDED in %s%s"
        log.log(level, line, run.id, run.name, _span(seconds), cost, extra=_TAGGED)

    async def _cost(self, call: RunCall) -> str:
        try:
            calls = await call.db(self.store.model_calls, call.run.id)
        except (Exception, StoreLost):  # the run succeeded; only its log line goes without
            return ""
        usd = from_pusd(sum(c.cost_pusd for c in calls))
        return f", {len(calls)} model call{'s' if len(calls) != 1 else ''}, ${usd:.4f}"


class SuccessLines:
    """The level of each success line: INFO for the first `per_second` of a second, DEBUG
    for the rest, which are counted and told at INFO in one line when their second ends.
    Lives on the worker's event loop (its summary is a timer of that loop)."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._second_ends = 0.0  # time.monotonic() when the current second ends
        self._told = 0  # success lines at INFO in the current second
        self._untold = 0  # successes past those, for the summary

    def level(self) -> int:
        now = time.monotonic()
        if now >= self._second_ends:
            self._second_ends, self._told = now + 1.0, 0
        if self._told < self.per_second:
            self._told += 1
            return logging.INFO
        if not self._untold and log.isEnabledFor(logging.INFO):
            # In an empty context: the summary is no one run's line (rota.observability.logs).
            asyncio.get_running_loop().call_later(
                self._second_ends - now, self._summary, context=contextvars.Context()
            )
        self._untold += 1
        return logging.DEBUG

    def _summary(self) -> None:
        untold, self._untold = self._untold, 0
        log.info(
            "%d more runs SUCCEEDED in the last second (more than %d a second are logged at "
            "DEBUG only)",
            untold,
            self.per_second,
            extra=_TAGGED,
        )


@functools.cache
def _step_timer(name: str) -> StepObserver:
    """Times each execution of a step body of a run of `name` into
    rota_step_duration_seconds, by its step name (`load`, not `load#2`): succeeded, failed
    (it raised) or interrupted. One per job name: built once, not per run."""

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
            STEP_DURATION.labels(name, step, state).observe(time.perf_counter() - started)

    return timed


def _final(run: Run, exc: Exception) -> bool:
    return not getattr(exc, "retryable", True) or run.failures + 1 >= run.max_attempts


def _count(run: Run, outcome: str, seconds: float) -> None:
    duration, counter = _counters(run.name, run.kind, outcome)
    duration.observe(seconds)
    if counter is not None:
        counter.inc()


@functools.cache
def _counters(name: str, kind: str, outcome: str) -> tuple[Histogram, Counter | None]:
    """The series an execution of `name` that ended so moves: its duration, and the count
    of finished runs or retries (none for a parked or interrupted one). Looked up once per
    (job, outcome): `labels()` checks and locks on every call, for every run."""
    counter = None
    if outcome == "succeeded":
        counter = RUNS_FINISHED.labels(name, kind, "SUCCEEDED")
    elif outcome == "failed":
        counter = RUNS_FINISHED.labels(name, kind, "FAILED")
    elif outcome == "retried":
        counter = RUN_RETRIES.labels(name, kind)
    return RUN_DURATION.labels(name, kind, outcome), counter


def _span(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"
