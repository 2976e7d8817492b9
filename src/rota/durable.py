"""The run context handed to jobs and workflows, and its durable steps.

A workflow is re-executed from the top when it resumes (after a crash, a retry or a
release). Each `await ctx.step(name, fn, ...)` first looks for a checkpoint: a completed step
returns its stored result and does not run again; an unfinished one runs (again), with the
same idempotency key as before so that side effects can be de-duplicated downstream.

rota's own database failing (StoreUnavailable: a restart, a dropped connection) is never a
failure of the run: a store call made for the run raises StoreLost, which user code's
`except Exception` does not catch, and the worker abandons the attempt without counting it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from . import serialization
from .backoff import backoff_delay
from .calls import call_user, error_info
from .clock import Clock
from .durations import Duration, optional_seconds, seconds
from .errors import (
    ConfigError,
    RotaError,
    RunInterrupted,
    SerializationError,
    StepFailed,
    StoreLost,
    StoreUnavailable,
)
from .model import Event, NewWait, Run, Step, StepRecord
from .storage.base import Store
from .storage.waits import Parking, event_topic

if TYPE_CHECKING:
    from .agents.agent import Agent, AgentResult
    from .approvals.records import ApprovalDecision
    from .storage.usage import ModelCall

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


class WaitParked(RunInterrupted):
    """Control flow: the run parked on a durable wait (WAITING, no lease); its worker lets
    go of it. `deadline` is when the wait times out, if it does."""

    def __init__(self, deadline: float | None) -> None:
        super().__init__("waiting")
        self.deadline = deadline


_current_step: ContextVar[StepInfo | None] = ContextVar("rota_current_step", default=None)
_current_runtime: ContextVar[Runtime | None] = ContextVar("rota_current_runtime", default=None)
# Model calls made by the step being executed, written with its checkpoint.
_step_calls: ContextVar[list[ModelCall] | None] = ContextVar("rota_step_calls", default=None)


def record_with_checkpoint(call: ModelCall) -> bool:
    """Have the running step's checkpoint write this model call's metering in its own
    transaction; False outside a step (the caller writes it itself)."""
    calls = _step_calls.get()
    if calls is None:
        return False
    calls.append(call)
    return True


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

    def escalate(self, item: Any, *, reason: str, to: str | None = None) -> dict[str, Any]:
        """Hand `item` to the job's agent (`escalate_to=`, or `to`): enqueues an agent run
        linked to this one, once per escalation of this run, and returns what to return:
        `return ctx.escalate(event, reason="unknown event type")`. See rota.escalation."""
        from .escalation import escalate

        app = getattr(self._runtime, "app", None)
        if app is None:
            raise RotaError("ctx.escalate needs a run executed by a worker")
        with _store_lost_on_blip():
            return escalate(self, app, item, reason=reason, to=to)

    def next_escalation(self) -> int:
        """Numbers this run's escalations in order, so a re-execution repeats the same keys."""
        self._escalations: int = getattr(self, "_escalations", 0) + 1
        return self._escalations

    def secret(self, name: str) -> str:
        """Secret `name`, if this run's principal is granted it; audited, and redacted from
        everything rota stores or logs afterwards (a step returning it stores
        `[redacted:NAME]`)."""
        from .identity.access import audit_writer
        from .identity.secrets import Vault

        vault = Vault(
            self._runtime.store,  # type: ignore[arg-type]
            audit_with=audit_writer(self._runtime),
        )
        with _store_lost_on_blip():
            return vault.get(name, self.principal, run_id=self.run_id)

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

    async def sleep(self, duration: Duration) -> None:
        """Pause the run durably: it parks (WAITING), holds no worker slot, survives
        restarts, and is queued again once `duration` ("1h", seconds, a timedelta) has
        passed. A resumed run does not sleep again."""
        delay = seconds(duration, what="ctx.sleep duration")
        key, seq = self._next_key("sleep"), self._next_seq()
        if self._checkpointed(key) is None:
            now = self._runtime.clock.now()
            wait = self._new_wait(
                key, seq, "sleep", "sleep", now, deadline=now + delay, detail={"seconds": delay}
            )
            await self._wait(wait, now)

    async def wait_for_event(
        self,
        name: str | Sequence[str],
        *,
        match: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration | None = None,
    ) -> Event | None:
        """Park the run until an event named `name` (or any of several names) is emitted
        or received by webhook whose payload has every top-level key of `match` with an
        equal value; returns that Event, or None once `timeout` has passed (None: no
        timeout). Events stored since the run was created count too (`lookback`: those
        stored since that long before this call instead); each event satisfies at most
        one wait of a run, and every run waiting for it."""
        names = _event_names(name)
        wanted = _match(match, names)
        timeout_s = optional_seconds(timeout, what="wait_for_event timeout")
        lookback_s = optional_seconds(lookback, what="wait_for_event lookback")
        step_name = f"event:{'|'.join(names)}"
        key, seq = self._next_key(step_name), self._next_seq()
        outcome = self._checkpointed(key)
        if outcome is None:
            now = self._runtime.clock.now()
            wait = self._new_wait(
                key,
                seq,
                step_name,
                "event",
                now,
                deadline=None if timeout_s is None else now + timeout_s,
                topics=tuple(event_topic(n) for n in names),
                detail={"names": list(names), "match": wanted, "timeout_s": timeout_s},
                since=self.run.created_at if lookback_s is None else now - lookback_s,
            )
            outcome = await self._wait(wait, now)
        event = outcome.get("event") if isinstance(outcome, dict) else None
        return None if event is None else Event(**event)

    async def approval(
        self,
        question: str,
        *,
        approvers: str | Sequence[str] | None = None,
        timeout: Duration | None = None,
        on_timeout: str | Callable[..., Any] = "reject",
        context: Mapping[str, Any] | None = None,
        name: str = "approval",
    ) -> ApprovalDecision:
        """Ask a human: the run parks until a principal with the role `approver:<group>`
        (of one of `approvers`) or `admin` approves or rejects (`rota approvals ...`, the
        HTTP API), or `timeout` passes; then `on_timeout` applies: "reject", "approve",
        "fail" or a fallback function run as a step. Returns an ApprovalDecision (truthy
        when approved). `context` (JSON) is shown to the approver. See docs/approvals.md."""
        from .approvals.asking import Ask, parker

        ask = Ask.make(question, approvers, timeout, on_timeout, context)
        key, seq = self._next_key(name), self._next_seq()
        outcome = self._checkpointed(key)
        if outcome is None:
            now = self._runtime.clock.now()
            request = ask.request(self.run, key, now)
            wait = self._new_wait(
                key,
                seq,
                name,
                "approval",
                now,
                deadline=request.deadline,
                detail=ask.wait_detail(request),
            )
            await self._flush_audit()  # the run's start precedes its request in the log
            outcome = await self._wait(wait, now, parker(self._runtime, request))
        return await ask.decision(self, key, outcome)

    async def _flush_audit(self) -> None:
        from .identity.access import audit_writer

        await self._db(audit_writer(self._runtime), [])

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store call for this run: the database being unavailable interrupts the run
        (StoreLost) instead of raising an error its code could take for its own."""
        try:
            return await self._runtime.db(fn, *args)
        except StoreUnavailable as exc:
            raise StoreLost(exc) from exc

    def _new_wait(
        self, key: str, seq: int, name: str, kind: str, now: float, **fields: Any
    ) -> NewWait:
        base = NewWait(
            run_id=self.run.id,
            lease_token=self.run.lease_token,
            step_key=key,
            step_name=name,
            seq=seq,
            kind=kind,
            topics=(),
            detail={},
            since=None,
            deadline=None,
            created_at=now,
        )
        return replace(base, **fields)

    async def _wait(
        self, wait: NewWait, now: float, park: Callable[..., Parking] | None = None
    ) -> Any:
        """Resolve the wait now if it can be (its outcome is checkpointed and returned),
        else park the run on it and stop executing. `park` replaces the store's park (an
        approval stores its request with the wait)."""
        parking = await self._db(park or self._runtime.store.park, wait, now)
        if parking.state == "resolved":
            return parking.result
        if parking.state == "parked":
            self.log.info("run %s parked on %s", self.run.id, wait.step_key)
            raise WaitParked(wait.deadline)
        raise RunInterrupted(parking.state)  # cancelled | lease_lost

    def _checkpointed(self, key: str) -> Any:
        """The outcome of a wait resolved before this execution, or None (outcomes are
        never None: a sleep's is {"until": ...})."""
        done = self._checkpoints.get(key)
        return done.result if done is not None and done.state == "SUCCEEDED" else None

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, self._seq + 1
        return seq

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
            calls: list[ModelCall] = []
            calls_token = _step_calls.set(calls)
            try:
                value = await call_user(fn, args, kwargs, timeout=timeout, what=f"step {key!r}")
                text = serialization.dumps(value, what=f"the result of step {key!r}")
                break
            except SerializationError as exc:
                await self._save(key, seq, name, "FAILED", attempts, input_hash, None, exc, started)
                raise
            except StoreUnavailable as exc:  # the step reached rota's database itself
                raise StoreLost(exc) from exc
            except Exception as exc:
                if attempts > retries:
                    await self._save(
                        key, seq, name, "FAILED", attempts, input_hash, None, exc, started
                    )
                    raise StepFailed(key, type(exc).__name__, str(exc)) from exc
                await asyncio.sleep(backoff_delay(attempts, backoff_s, cap_s=300))
            finally:
                _step_calls.reset(calls_token)
                _current_step.reset(token)
        await self._save(
            key, seq, name, "SUCCEEDED", attempts, input_hash, text, None, started, calls
        )
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
        model_calls: Sequence[ModelCall] = (),
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
        if not await self._db(self._runtime.store.save_step, record, model_calls):
            raise RunInterrupted("lease_lost")


@contextmanager
def _store_lost_on_blip() -> Iterator[None]:
    """For the context's own synchronous store calls: see RunContext._db."""
    try:
        yield
    except StoreUnavailable as exc:
        raise StoreLost(exc) from exc


def _event_names(name: str | Sequence[str]) -> tuple[str, ...]:
    names = (name,) if isinstance(name, str) else name
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ConfigError(
            f"wait_for_event needs an event name or a list of them, got {name!r}; e.g. "
            "ctx.wait_for_event('invoice.paid') or ctx.wait_for_event(['paid', 'refunded'])"
        )
    return tuple(dict.fromkeys(names))  # in order, without repeats


def _match(match: Mapping[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    """The match as stored: JSON, so that it compares with payloads as they are stored."""
    if match is None:
        return {}
    if not isinstance(match, Mapping) or not all(isinstance(k, str) for k in match):
        raise ConfigError(
            f"match must map top-level payload keys to values, e.g. match={{'id': 42}}; "
            f"got {match!r}"
        )
    what = f"the match of wait_for_event({', '.join(map(repr, names))})"
    return dict(serialization.roundtrip(dict(match), what=what))
