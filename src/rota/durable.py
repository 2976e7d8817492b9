"""The kernel of a run: its durable context, whose steps and waits survive re-execution.

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
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from . import serialization
from .backoff import backoff_delay
from .batches import WriteBatch
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
from .model import Event, ModelCall, NewWait, Run, Step, StepRecord
from .runtime import StepInfo, active_step, step_scope
from .storage.audit import AuditEntry
from .storage.base import Store
from .storage.waits import Parking, event_topic

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

    def write_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit records (blocking: call it through `db`). A worker writes the run's
        pending run.started record first, so that a run's own records follow it."""
        ...


@dataclass(frozen=True, slots=True)
class PendingWait:
    """A durable wait begun by `DurableContext.begin_wait`: its step name and key, its place
    in the run (`seq`) and, when an earlier execution resolved it, its checkpointed outcome
    (None: the wait is still to be parked on; outcomes are never None)."""

    name: str
    key: str
    seq: int
    outcome: Any


class WaitParked(RunInterrupted):
    """Control flow: the run parked on a durable wait (WAITING, no lease); its worker lets
    go of it. `deadline` is when the wait times out, if it does."""

    def __init__(self, deadline: float | None) -> None:
        super().__init__("waiting")
        self.deadline = deadline


class DurableContext:
    """The kernel part of the context passed to every job and workflow function: its run,
    durable steps, sleeps and waits for events. rota.context.RunContext adds the features."""

    def __init__(self, run: Run, runtime: Runtime, checkpoints: dict[str, Step]) -> None:
        self.run = run
        self._runtime = runtime
        self._checkpoints = checkpoints
        self._occurrences: dict[str, int] = {}
        self._seq = 0
        self.log = logging.LoggerAdapter(log, {"run_id": run.id, "job": run.name})

    @property
    def runtime(self) -> Runtime:
        """The worker (or replay) executing this run: its clock, store and database threads."""
        return self._runtime

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
        info = active_step()
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
        input_hash = serialization.fingerprint(args, kwargs) if args or kwargs else _NO_INPUTS
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

    async def sleep(self, duration: Duration) -> None:
        """Pause the run durably: it parks (WAITING), holds no worker slot, survives
        restarts, and is queued again once `duration` ("1h", seconds, a timedelta) has
        passed. A resumed run does not sleep again."""
        delay = seconds(duration, what="ctx.sleep duration")
        pending = self.begin_wait("sleep")
        if pending.outcome is None:
            now = self._runtime.clock.now()
            await self.park(
                pending, "sleep", now=now, deadline=now + delay, detail={"seconds": delay}
            )

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
        pending = self.begin_wait(f"event:{'|'.join(names)}")
        outcome = pending.outcome
        if outcome is None:
            now = self._runtime.clock.now()
            outcome = await self.park(
                pending,
                "event",
                now=now,
                deadline=None if timeout_s is None else now + timeout_s,
                topics=tuple(event_topic(n) for n in names),
                detail={"names": list(names), "match": wanted, "timeout_s": timeout_s},
                since=self.run.created_at if lookback_s is None else now - lookback_s,
            )
        event = outcome.get("event") if isinstance(outcome, dict) else None
        return None if event is None else Event(**event)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store call for this run, off the event loop: the database being unavailable
        interrupts the run (StoreLost) instead of raising an error its code could take for
        its own."""
        try:
            return await self._runtime.db(fn, *args)
        except StoreUnavailable as exc:
            raise StoreLost(exc) from exc

    def begin_wait(self, name: str) -> PendingWait:
        """Begin a durable wait named `name`: number it like a step (key `name`, `name#2`,
        ...) and look up the outcome an earlier execution checkpointed for it. When that
        outcome is None, `park` on it; else use the outcome (a resumed run does not wait
        again)."""
        key, seq = self._next_key(name), self._next_seq()
        return PendingWait(name, key, seq, self._checkpointed(key))

    async def park(
        self,
        pending: PendingWait,
        kind: str,
        *,
        now: float,
        deadline: float | None,
        detail: dict[str, Any],
        topics: tuple[str, ...] = (),
        since: float | None = None,
        park: Callable[..., Parking] | None = None,
    ) -> Any:
        """Register the wait (of `kind`: "sleep", "event", "approval", ...) and resolve it
        now if it can be (its outcome is checkpointed and returned), else park the run on it
        and stop executing (WaitParked). `park` replaces the store's park (an approval stores
        its request with the wait)."""
        wait = NewWait(
            run_id=self.run.id,
            lease_token=self.run.lease_token,
            step_key=pending.key,
            step_name=pending.name,
            seq=pending.seq,
            kind=kind,
            topics=topics,
            detail=detail,
            since=since,
            deadline=deadline,
            created_at=now,
        )
        parking = await self.db(park or self._runtime.store.park, wait, now)
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
            calls: list[ModelCall] = []
            with step_scope(info, calls):
                try:
                    value = await call_user(fn, args, kwargs, timeout=timeout, what=f"step {key!r}")
                    text = serialization.dumps(value, what=f"the result of step {key!r}")
                    break
                except SerializationError as exc:
                    await self._save(
                        key, seq, name, "FAILED", attempts, input_hash, None, exc, started
                    )
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
        try:
            saved = await _step_writes(self._runtime).write(self._runtime.db, (record, model_calls))
        except StoreUnavailable as exc:
            raise StoreLost(exc) from exc
        if not saved:
            raise RunInterrupted("lease_lost")


# What every step of an agent run (and most steps) is called with: no inputs. Hashed once.
_NO_INPUTS = serialization.fingerprint((), {})


StepWrite = tuple[StepRecord, Sequence[ModelCall]]
_STEP_WRITES: weakref.WeakKeyDictionary[Any, WriteBatch[StepWrite, bool]] = (
    weakref.WeakKeyDictionary()
)


_AUDIT_WRITES: weakref.WeakKeyDictionary[Any, WriteBatch[Sequence[AuditEntry], None]] = (
    weakref.WeakKeyDictionary()
)


async def write_audit(runtime: Runtime, entries: Sequence[AuditEntry]) -> None:
    """Append a run's audit records through `runtime.write_audit`, batched with the other
    runs' records written at the same time (one chain append for all of them; each run's
    records stay in its order, after its run.started)."""
    try:
        batch = _AUDIT_WRITES.get(runtime)
    except TypeError:  # a runtime that cannot be a weak key: written on its own
        await runtime.db(runtime.write_audit, entries)
        return
    if batch is None:
        batch = WriteBatch(runtime.write_audit, partial(_write_audits, runtime))
        _AUDIT_WRITES[runtime] = batch
    try:
        await batch.write(runtime.db, entries)
    except StoreUnavailable as exc:
        raise StoreLost(exc) from exc


def _write_audits(runtime: Runtime, batches: list[Sequence[AuditEntry]]) -> list[None]:
    runtime.write_audit([entry for entries in batches for entry in entries])
    return [None] * len(batches)


def _step_writes(runtime: Runtime) -> WriteBatch[StepWrite, bool]:
    """The runtime's (worker's) batch of step checkpoints: its concurrent runs' steps are
    committed together."""
    try:
        batch = _STEP_WRITES.get(runtime)
    except TypeError:  # a runtime that cannot be a weak key: its own batch each time
        return WriteBatch(lambda w: runtime.store.save_step(*w), runtime.store.save_steps)
    if batch is None:
        store = runtime.store
        batch = WriteBatch(lambda w: store.save_step(*w), store.save_steps)
        _STEP_WRITES[runtime] = batch
    return batch


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
