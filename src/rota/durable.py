"""The run context handed to jobs and workflows, and its durable steps.

A workflow is re-executed from the top when it resumes (after a crash, a retry or a
release). Each `await ctx.step(name, fn, ...)` first looks for a checkpoint: a completed step
returns its stored result and does not run again; an unfinished one runs (again), with the
same idempotency key as before so that side effects can be de-duplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import serialization
from .backoff import backoff_delay
from .calls import call_user, error_info
from .clock import Clock
from .durations import Duration, optional_seconds, seconds
from .errors import RotaError, RunInterrupted, SerializationError, StepFailed
from .model import Run, Step, StepRecord
from .storage.base import Store

if TYPE_CHECKING:
    from .agents.agent import Agent, AgentResult

log = logging.getLogger("rota.run")


class Runtime(Protocol):
    """What a run needs from the worker executing it."""

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Store: ...

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store call off the event loop."""
        ...


@dataclass(frozen=True, slots=True)
class StepInfo:
    run_id: str
    key: str
    attempt: int
    idempotency_key: str


_current_step: ContextVar[StepInfo | None] = ContextVar("rota_current_step", default=None)
_current_runtime: ContextVar[Runtime | None] = ContextVar("rota_current_runtime", default=None)


def current_runtime() -> Runtime | None:
    """The worker executing the run of this task, if any: its store and its database
    threads (use `runtime.db(...)`, which keeps to the worker's few connections)."""
    return _current_runtime.get()


def current_step() -> StepInfo:
    """The step being executed; its idempotency key is stable across re-executions."""
    info = _current_step.get()
    if info is None:
        raise RotaError("current_step() was called outside a step; call it inside ctx.step(...)")
    return info


class RunContext:
    """Passed as the first argument to every job and workflow function."""

    def __init__(self, run: Run, runtime: Runtime, checkpoints: dict[str, Step]) -> None:
        self.run = run
        self._runtime = runtime
        _current_runtime.set(runtime)  # each run executes in a task of its own: it stays there
        self._checkpoints = checkpoints
        self._occurrences: dict[str, int] = {}
        self._seq = 0
        self.log = logging.LoggerAdapter(log, {"run_id": run.id, "job": run.name})

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def attempt(self) -> int:
        return self.run.attempt

    @property
    def payload(self) -> Any:
        return self.run.payload

    @property
    def principal(self) -> str | None:
        return self.run.principal

    @property
    def idempotency_key(self) -> str:
        """Inside a step: the step's key; outside: the run's (stable across attempts)."""
        info = _current_step.get()
        return info.idempotency_key if info else self.run.id

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        timeout: Duration | None = None,
        backoff: Duration = "1s",
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once per run, durably; returns its JSON result."""
        key = self._next_key(name)
        seq, self._seq = self._seq, self._seq + 1
        input_hash = serialization.fingerprint(args, kwargs)
        done = self._checkpoints.get(key)
        if done is not None and done.state == "SUCCEEDED":
            if done.input_hash not in (None, input_hash):
                self.log.warning("step %r resumed with different inputs than it ran with", key)
            return done.result
        return await self._execute(
            key,
            seq,
            name,
            fn,
            args,
            kwargs,
            input_hash,
            retries,
            optional_seconds(timeout, what="step timeout"),
            seconds(backoff, what="step backoff"),
        )

    async def agent(self, agent: Agent, task: Any = None, *, deps: Any = None) -> AgentResult:
        """Run `agent` as part of this workflow. Its model and tool calls are steps of this
        run (`agent:NAME/model#1`, `agent:NAME/tool:lookup`, ...), so a resumed workflow
        replays them instead of calling again. Returns the AgentResult whatever its reason;
        `result.output_or_raise()` turns a failure into AgentFailed."""
        prefix = self._next_key(f"agent:{agent.name}")
        return await agent.run(task, deps=deps, ctx=self, step_prefix=f"{prefix}/")

    def _next_key(self, name: str) -> str:
        if not name or not isinstance(name, str):
            raise RotaError("a step needs a non-empty name: await ctx.step('load', fn, ...)")
        count = self._occurrences.get(name, 0) + 1
        self._occurrences[name] = count
        return name if count == 1 else f"{name}#{count}"

    async def _execute(
        self,
        key: str,
        seq: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        input_hash: str,
        retries: int,
        timeout: float | None,
        backoff_s: float,
    ) -> Any:
        started = self._runtime.clock.now()
        attempts = 0
        while True:
            attempts += 1
            info = StepInfo(self.run.id, key, attempts, f"{self.run.id}:{key}")
            token = _current_step.set(info)
            try:
                value = await call_user(fn, args, kwargs, timeout=timeout, what=f"step {key!r}")
                text = serialization.dumps(value, what=f"the result of step {key!r}")
                break
            except SerializationError as exc:
                await self._save(key, seq, name, "FAILED", attempts, input_hash, None, exc, started)
                raise
            except Exception as exc:
                if attempts > retries:
                    await self._save(
                        key, seq, name, "FAILED", attempts, input_hash, None, exc, started
                    )
                    raise StepFailed(key, type(exc).__name__, str(exc)) from exc
                await asyncio.sleep(backoff_delay(attempts, backoff_s, cap_s=300))
            finally:
                _current_step.reset(token)
        await self._save(key, seq, name, "SUCCEEDED", attempts, input_hash, text, None, started)
        return serialization.loads(text)

    async def _save(
        self,
        key: str,
        seq: int,
        name: str,
        state: str,
        attempts: int,
        input_hash: str,
        result: str | None,
        exc: BaseException | None,
        started: float,
    ) -> None:
        record = StepRecord(
            run_id=self.run.id,
            lease_token=self.run.lease_token,
            key=key,
            seq=seq,
            name=name,
            state=state,
            attempts=attempts,
            input_hash=input_hash,
            result=result,
            error=serialization.dumps(error_info(exc), what="error") if exc else None,
            started_at=started,
            finished_at=self._runtime.clock.now(),
        )
        if not await self._runtime.db(self._runtime.store.save_step, record):
            raise RunInterrupted("lease_lost")
