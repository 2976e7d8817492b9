"""The worker: claims runs with a lease, executes them, heartbeats, and records outcomes.

Claims and completions are batched: a claim asks for as many runs as there are free slots,
and completions queue up while a write is in flight and go out together. A run whose lease
expires (its worker was killed) is requeued by any worker's reaper and resumes from its
checkpoints elsewhere; every write a worker makes is fenced by the run's lease token.

The database being unavailable (StoreUnavailable: a restart, a dropped connection, a locked
SQLite file) fails no run: an attempt whose own store call fails is abandoned, handed back
with the next completion flush, and resumes from its checkpoints without spending a retry;
the worker logs one line when the database goes and one when it is back (however many of
its loops and runs noticed), backs off meanwhile, and carries on on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, runtime_checkable

from .. import serialization
from ..backoff import backoff_delay
from ..batches import DatabaseThreads
from ..calls import call_user, error_info
from ..clock import Clock, system_clock
from ..context import RunContext, RunServices
from ..durable import WaitParked
from ..errors import RunInterrupted, StoreLost, StoreUnavailable
from ..ids import new_id
from ..jobs import Registry
from ..model import Completion, Execution, Run, RunState
from ..storage.audit import AuditEntry
from ..storage.base import Store
from ..storage.outage import Outage
from .audit import AuditBatch
from .middleware import RunCall, RunMiddleware, chain, standard
from .wakeups import Wakeups

log = logging.getLogger("rota.worker")
_SMOOTHING = 0.1  # weight of the newest measurement in the worker's moving averages
# The run whose task this is: its store calls are the run's own (see Worker.db).
_serving: ContextVar[str | None] = ContextVar("rota_worker_serving", default=None)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: how many runs at once, how long a lease lasts before another worker
    may take the run over, and how long a stopping worker lets running runs finish."""

    concurrency: int = 16
    # Runs leased ahead of free slots. Default: = concurrency, and more while runs are
    # shorter than a claim's round trip (see Worker._prefetch), up to claim_batch.
    prefetch: int | None = None
    lease_s: float = 30.0
    poll_interval_s: float = 1.0
    claim_batch: int = 200
    # Runs due within this window are claimed ahead and started at their time, so that a
    # burst of scheduled runs does not wait behind its own claims.
    lookahead_s: float = 0.25
    # Runs leased ahead of their time do not hold a slot until then, so up to this many of
    # them are held beyond concurrency + prefetch: a burst falling due at once (1,000
    # schedules every second) is all leased before its time instead of claimed piecemeal
    # as slots free up after it.
    lookahead_max: int = 1000
    shutdown_grace_s: float = 30.0
    max_reclaims: int = 20
    db_threads: int | None = None  # default: 1 for SQLite, 4 for PostgreSQL


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    parked: int = 0  # executions that ended parked on a durable wait (sleep, event)
    abandoned: int = 0  # attempts handed back because the database was unavailable
    by_name: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerParts:
    """What a worker is made of besides its registry and options, as an App composes it
    (App.worker_parts): the store, the clock, the in-process wake-ups, the run middleware
    (outermost first), the checks to run when the worker starts, and the services its runs
    reach through their context (escalation, shared budgets, approval announcements)."""

    store: Store
    clock: Clock
    wakeups: Wakeups
    middleware: Sequence[RunMiddleware]
    on_start: Sequence[Callable[[], object]]
    services: RunServices | None = None
    # Checks every worker runs on its database threads every so often, e.g. the alerts
    # watchdog: (interval in seconds, the check). A failing check is logged, never fatal.
    periodic: Sequence[tuple[float, Callable[[], object]]] = ()


@runtime_checkable
class _Composer(Registry, Protocol):
    """A registry that composes its workers' parts itself: the App (Worker(app))."""

    def worker_parts(self) -> WorkerParts: ...


@dataclass
class _Active:
    run: Run
    task: asyncio.Task[None]
    interrupt: str | None = None
    started: bool = False  # took an execution slot (else still waiting in the prefetch buffer)
    ahead: bool = False  # leased ahead of its time and still waiting for it
    # Leased ahead and not begun yet (waiting for its time or for a slot): one of a burst
    # falling due together, which the completion flush lets start first.
    in_burst: bool = False
    slot: bool = False  # holds an execution slot now (freed when its body returns)


class Worker:
    """Claims runs of the registry's jobs from the store and executes them.

    `Worker(app)` (or `app.worker(...)`) takes its parts from the App (`App.worker_parts`):
    its store, clock and in-process wake-ups, the standard run middleware followed by
    `app.run_middleware`, and a check of the declared run_as principals when it starts.
    Any other registry passes `store` (and optionally the rest); its middleware then
    defaults to the standard list (rota.worker.middleware.standard)."""

    def __init__(
        self,
        registry: Registry,
        options: WorkerOptions | None = None,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        wakeups: Wakeups | None = None,
        middleware: Sequence[RunMiddleware] | None = None,
        on_start: Sequence[Callable[[], object]] | None = None,
        services: RunServices | None = None,
        periodic: Sequence[tuple[float, Callable[[], object]]] | None = None,
        **overrides: Any,
    ) -> None:
        if store is None:  # Worker(app): the App composes it
            if not isinstance(registry, _Composer):
                raise TypeError("Worker(registry) needs store=...; or pass an App")
            parts = registry.worker_parts()
            store = parts.store
            clock = parts.clock if clock is None else clock
            wakeups = parts.wakeups if wakeups is None else wakeups
            middleware = parts.middleware if middleware is None else middleware
            on_start = parts.on_start if on_start is None else on_start
            services = parts.services if services is None else services
            periodic = parts.periodic if periodic is None else periodic
        self.registry = registry
        self.services = services
        self.options = options or WorkerOptions(**overrides)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.store: Store = store
        self.clock: Clock = system_clock if clock is None else clock
        self.wakeups = Wakeups() if wakeups is None else wakeups
        self.middleware: tuple[RunMiddleware, ...] = tuple(
            standard(store) if middleware is None else middleware
        )
        self.on_start: tuple[Callable[[], object], ...] = tuple(on_start or ())
        self.periodic = tuple(periodic or ())
        self._chain = chain(self.middleware, self._invoke)
        self.stats = WorkerStats()
        self._names = sorted(registry.definitions)
        self._limited = any(d.limited for d in registry.definitions.values())
        self._active: dict[str, _Active] = {}
        self._ahead = 0  # of _active, the runs still waiting for their time (lookahead)
        self._in_burst = 0  # of _active, the runs leased ahead that have not begun yet
        # One timer for all the runs leased ahead that are due at the same time (_until_due).
        self._due_at: dict[float, asyncio.Event] = {}
        self._claim_s: float | None = None  # moving average of a claim's round trip
        self._run_s: float | None = None  # moving average of an execution, slot to outcome
        self._pending: list[Completion] = []
        self._flushing: list[Completion] = []  # the batch being written right now
        # How long each execution's body took, written with the completions (compute time).
        self._executions: list[Execution] = []
        self._flushing_executions: list[Execution] = []
        # One outage for the whole worker: its loops and runs all meet the same database,
        # so it goes (one warning) and comes back (one line) once, however many notice.
        poll = self.options.poll_interval_s
        self._outage = Outage(log, "worker", base_s=poll, cap_s=5 * poll)
        self._abandoned_in_outage = 0
        # Run starts (and refusals), written in the transaction of each completion flush,
        # or sooner by write_audit.
        self.audit = AuditBatch(store, self._want_flush)
        self._stopping = False
        # When a parked run next times out (None: none known; 0: look at the first turn),
        # and when to look again after a sweep left one behind (held by another resolver).
        self._wait_due: float | None = 0.0
        self._sweep_after = 0.0
        self._db_pool: DatabaseThreads | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ------------------------------------------------------------------------

    async def run(
        self,
        *,
        until_idle: bool = False,
        skip_ahead: Callable[[], Awaitable[bool]] | None = None,
    ) -> WorkerStats:
        """Work until stop() (or, with until_idle, until no queued or running run is left).

        skip_ahead (with until_idle): asked whenever this worker holds no run and has
        recorded every outcome; True when it moved the clock on so that something is due
        now. App.drain passes one under a FakeClock, whose time passes only when told to."""
        for check in self.on_start:  # App: a run_as naming no principal fails here, not per run
            check()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._burst_begun = asyncio.Event()
        self._burst_begun.set()
        self._due_at = {}  # timers of an earlier run() died with its loop
        self._setup_threads()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        unsubscribe = self.wakeups.subscribe(self.wake)
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="rota-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="rota-flush"),
            *(
                asyncio.create_task(self._periodic_loop(every, check), name="rota-periodic")
                for every, check in self.periodic
            ),
        ]
        listener = self._start_listener()
        try:
            await self._claim_loop(until_idle, skip_ahead)
        finally:
            await self._shutdown(background)
            if listener:
                listener.set()
            unsubscribe()
            if self._db_pool:
                self._db_pool.shutdown(wait=False)
            _gc_back_on()
        return self.stats

    def stop(self) -> None:
        """Graceful: stop claiming, let running runs finish within the grace period."""
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Thread-safe nudge: runs may be ready."""
        if self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store call on a database thread. Called for a run (from its task), the
        database being unavailable raises StoreLost: the run's code cannot catch it as an
        ordinary error, and the worker abandons the attempt without counting it."""
        assert self._db_pool is not None
        try:
            return await self._db_pool.call(fn, *args)
        except StoreUnavailable as exc:
            if _serving.get() is None:
                raise
            raise StoreLost(exc) from exc

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(
        self, until_idle: bool, skip_ahead: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming, so that a wake-up during the claim counts
            await self._sweep_waits()
            free = self._free()
            try:
                got = await self._claim(free) if free > 0 else 0
            except Exception as exc:  # e.g. the database is unavailable: back off, try again
                await self._pause(self._outage.failed(exc))
                continue
            self._db_works()
            if got and got >= min(free, self.options.claim_batch):
                continue  # likely more ready: claim again straight away
            if until_idle and not self._active:
                idle = await self._idle()  # records outcomes first
                if skip_ahead is not None and await skip_ahead():
                    continue  # the clock moved on: something is due now
                if idle:
                    return
            # Busy (slots full, or runs were just claimed): a finishing run or a new one
            # wakes the loop. Only a worker that found nothing asks when to look next.
            wait = await self._idle_wait() if free > 0 and not got else self._busy_wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _capacity(self) -> int:
        # Leasing a few runs ahead of the free slots hides the claim round trip.
        return self.options.concurrency + self._prefetch()

    def _prefetch(self) -> int:
        """The prefetch option if given; else `concurrency`, or as many runs as the slots
        finish during one claim's round trip when runs are shorter than that (a drain of
        short jobs is bound by claims: each takes what is free, so bigger claims, fewer
        trips), at most claim_batch. Long runs (agents) keep it at `concurrency`, so that a
        worker never sits on runs another worker could be executing."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        slots = self.options.concurrency
        if self._run_s is None or self._claim_s is None:
            return slots
        finished = slots * self._claim_s / max(self._run_s, 1e-6)
        return max(slots, min(self.options.claim_batch, int(finished)))

    def _measured(self, which: str, seconds: float) -> None:
        """Moving averages of a claim's round trip and an execution's time (_prefetch)."""
        old = getattr(self, which)
        setattr(self, which, seconds if old is None else old + _SMOOTHING * (seconds - old))

    def _free(self) -> int:
        """How many more runs to lease: up to the capacity for runs due now, and as many as
        lookahead_max more while earlier ones wait for their time (they hold no slot yet)."""
        due_now = len(self._active) - self._ahead
        return max(
            0,
            min(
                self._capacity() - due_now,
                self._capacity() + self.options.lookahead_max - len(self._active),
            ),
        )

    async def _claim(self, free: int) -> int:
        want = min(free, self.options.claim_batch)
        now = self.clock.now()
        due_by = now + self.options.lookahead_s
        began = time.monotonic()
        runs = await self.db(
            partial(self.store.claim, due_by=due_by),
            self.id,
            self._names,
            want,
            now,
            self.options.lease_s,
        )
        self._measured("_claim_s", time.monotonic() - began)
        self._start(runs)  # before claiming more: a failure then must not orphan these
        runs += await self._claim_ahead(runs, now, due_by)
        if self._limited and len(runs) < want:
            limited = await self.db(
                partial(self.store.claim, limited=True, due_by=due_by),
                self.id,
                self._names,
                want - len(runs),
                now,
                self.options.lease_s,
            )
            self._start(limited)
            runs += limited
        return len(runs)

    async def _claim_ahead(self, claimed: list[Run], now: float, due_by: float) -> list[Run]:
        """A claim that took runs due later (a burst falling due soon) is followed by one for
        more of those only, beyond the slots: up to lookahead_max runs wait for their time
        leased. A drain's claims take runs due now, so it never pays for this query."""
        room = self._capacity() + self.options.lookahead_max - len(self._active)
        if room <= 0 or not claimed or claimed[-1].run_after <= now:
            return []
        runs: list[Run] = await self.db(
            partial(self.store.claim, due_by=due_by, ahead=True),
            self.id,
            self._names,
            min(room, self.options.claim_batch),
            now,
            self.options.lease_s,
        )
        self._start(runs)
        return runs

    def _start(self, runs: list[Run]) -> None:
        now = self.clock.now()
        for run in runs:
            task = asyncio.create_task(self._slotted(run), name=f"rota-run-{run.id}")
            ahead = run.run_after > now
            self._active[run.id] = _Active(run, task, ahead=ahead, in_burst=ahead)
            self._ahead += ahead
            self._in_burst += ahead
        if self._in_burst:
            self._burst_begun.clear()
        self.stats.claimed += len(runs)

    async def _pause(self, delay: float) -> None:
        """Back off after a failure: `delay`, or until something wakes the loop (stop())."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _busy_wait(self) -> float:
        """How long a busy worker waits for a wake-up without asking the store: one
        lookahead at most, so that a run falling due meanwhile is still leased ahead of its
        time and starts on time; less when a parked run it knows of times out sooner."""
        wait = min(self.options.poll_interval_s, self.options.lookahead_s)
        if self._wait_due is not None:
            wait = min(wait, max(self._wait_due, self._sweep_after) - self.clock.now())
        return max(0.0, wait)

    async def _idle_wait(self) -> float:
        """Until the next poll, or sooner when a queued run falls due (e.g. a scheduled
        run enqueued ahead of its time: wake to claim it one lookahead early) or a parked
        run's wait times out."""
        poll = self.options.poll_interval_s
        try:
            due, self._wait_due = await self.db(self.store.wake_times, self._names)
        except Exception:
            return poll
        now, waits = self.clock.now(), [poll]
        if due is not None:
            waits.append(due - self.options.lookahead_s - now)
        if self._wait_due is not None:
            waits.append(max(self._wait_due, self._sweep_after) - now)
        return max(0.0, min(waits))

    async def _sweep_waits(self) -> None:
        """Time out parked runs whose deadline has passed, so that they are queued again.
        No query unless a deadline this worker knows of has passed."""
        now = self.clock.now()
        if self._wait_due is None or self._wait_due > now or now < self._sweep_after:
            return
        try:
            self._wait_due = await self.db(self.store.wake_due_waits, now)
        except Exception as exc:  # the claim that follows backs off
            self._outage.failed(exc)
            self._wait_due = now
        if self._wait_due is not None and self._wait_due <= now:
            self._sweep_after = now + self.options.poll_interval_s

    async def _idle(self) -> bool:
        """Whether no run of these jobs is queued or running, once this worker's outcomes
        are recorded; False (after a back-off) while the database is unavailable."""
        try:
            await self._flush_now()
            counts = await self.db(self.store.count_states, self._names)
        except Exception as exc:
            await self._pause(self._outage.failed(exc))
            return False
        return not counts.get("ENQUEUED") and not counts.get("RUNNING")

    # -- executing ---------------------------------------------------------------------

    async def _slotted(self, run: Run) -> None:
        mine = self._active[run.id]
        try:
            await self._until_due(run)  # claimed ahead (lookahead): start at its time
            self._due(mine)
            await self._slots.acquire()
            mine.started = mine.slot = True
            self._begun(mine)
            began = time.monotonic()
            try:
                await self._execute(run)
            finally:
                self._free_slot(mine)
            self._measured("_run_s", time.monotonic() - began)
        except asyncio.CancelledError as exc:  # interrupted while waiting for a slot
            self._interrupted(run, exc)
        finally:
            self._due(mine)
            self._begun(mine)
            # A run that parked may be woken and claimed again before this task ends.
            if self._active.get(run.id) is mine:
                del self._active[run.id]
            self._wake.set()

    async def _until_due(self, run: Run) -> None:
        """Wait until a run leased ahead is due. Runs due at the same moment (schedules
        falling due together) share one timer, so they all wake in the same loop turn and
        begin back to back. With a timer each, they woke over several turns, and between
        those the loop ran a completion flush or a claim, whose database thread then took
        the GIL in turns with the rest of the burst."""
        early = run.run_after - self.clock.now()
        if early <= 0:
            return
        due = self._due_at.get(run.run_after)
        if due is None:
            due = self._due_at[run.run_after] = asyncio.Event()
            assert self._loop is not None
            self._loop.call_later(min(early, self.options.lookahead_s), self._fire, run.run_after)
        await due.wait()

    def _fire(self, run_after: float) -> None:
        self._due_at.pop(run_after).set()
        assert self._loop is not None
        _no_gc_this_turn(self._loop)

    def _free_slot(self, active: _Active) -> None:
        if active.slot:
            active.slot = False
            self._slots.release()

    def _due(self, active: _Active) -> None:
        """A run leased ahead reached its time (or ended before it): it counts against the
        capacity for runs due now from here on."""
        if active.ahead:
            active.ahead = False
            self._ahead -= 1

    def _begun(self, active: _Active) -> None:
        """A run leased ahead began (or ended before it could): once all of them have, the
        completion flush may go on (_after_burst)."""
        if active.in_burst:
            active.in_burst = False
            self._in_burst -= 1
            if not self._in_burst:
                self._burst_begun.set()

    async def _execute(self, run: Run) -> None:
        call = RunCall(run, self.registry.definitions[run.name], self.db, self.audit)
        _serving.set(run.id)  # this task's store calls are the run's own from here on
        try:
            value = await self._chain(call)  # the run middleware, then _invoke
            text = serialization.dumps(value, what=f"the result of {run.name!r}")
            self._finish(run, RunState.SUCCEEDED, result=text)
        except StoreLost as exc:
            self._abandoned(run, exc.cause)
        except WaitParked as exc:  # WAITING now, without a lease: nothing left to record
            self.stats.parked += 1
            if exc.deadline is not None:
                self._wait_due = min(self._wait_due or exc.deadline, exc.deadline)
        except (asyncio.CancelledError, RunInterrupted) as exc:
            self._interrupted(run, exc)
        except Exception as exc:
            cause = _store_failure(exc)
            if cause is not None:  # the run's code wrapped a database failure in its own
                self._abandoned(run, cause)
            else:
                self._failed(run, exc, retryable=getattr(exc, "retryable", True))
        finally:
            self._timed(run, call.body_started, call.body_ended)

    async def _invoke(self, call: RunCall) -> Any:
        """The innermost call of the chain: the job's function, given its RunContext."""
        run, definition = call.run, call.definition
        checkpoints = {}
        if run.attempt > 1:  # a first attempt cannot have checkpoints
            checkpoints = {s.key: s for s in await self.db(self.store.steps, run.id)}
        ctx = RunContext(run, self, checkpoints, self.services)
        args = (ctx, run.payload) if definition.takes_payload else (ctx,)
        call.body_started = self.clock.now()
        value = await call_user(
            definition.fn, args, {}, timeout=run.timeout_s, what=f"run of {run.name!r}"
        )
        call.body_ended, call.returned = self.clock.now(), time.perf_counter()
        if self._in_burst:
            await self._let_burst_begin(self._active[run.id])
        return value

    async def _let_burst_begin(self, mine: _Active) -> None:
        """Let the rest of a burst begin before this run's outcome is recorded. At the
        tick, the burst's runs wake in one loop turn, and each used to do its bookkeeping
        (middleware, metrics, the Completion) before the next one's body began: the last
        body began after all of it. One yield puts this run behind the others woken in that
        turn; its slot is freed first, so that it holds up no run of the burst waiting for
        one. The body has returned, so its outcome stands: an interruption arriving now
        (shutdown, a lost lease, a cancel request) is too late to stop it, and is not let
        turn a finished run into one that runs again."""
        self._free_slot(mine)
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()

    def _timed(self, run: Run, body_started: float | None, body_ended: float | None) -> None:
        """Queue the time this execution's body took (none if it never began), to be
        written with the completions: a run's compute time is its bodies' time, not the
        time it waited for a slot after it was claimed, nor for a burst to begin after."""
        ended = self.clock.now() if body_ended is None else body_ended
        seconds = 0.0 if body_started is None else max(0.0, ended - body_started)
        self._executions.append(Execution(run.id, run.lease_token, seconds))
        self._flush_wanted.set()

    def _abandoned(self, run: Run, cause: StoreUnavailable) -> None:
        """The database failed under the run: hand it back to the queue, to resume from
        its checkpoints (the step it was in runs again). Not a failure: no retry is spent.
        Written with the next completion flush, so once the database is back; until then
        the heartbeat keeps its lease, and if that lapses the reaper requeues it."""
        self._outage.failed(cause)  # the one warning line, if the run noticed first
        log.debug(
            "run %s of %s: database unavailable (%s); attempt abandoned, it resumes from its "
            "checkpoints once the database is back",
            run.id,
            run.name,
            cause,
        )
        self.stats.abandoned += 1
        self._abandoned_in_outage += 1
        self._pending.append(
            Completion(
                run_id=run.id,
                lease_token=run.lease_token,
                state=RunState.ENQUEUED,
                finished_at=None,
                error=serialization.dumps(error_info(cause), what="error"),
                failures=run.failures,
                run_after=self.clock.now(),
            )
        )
        self._flush_wanted.set()

    def _interrupted(self, run: Run, exc: BaseException) -> None:
        active = self._active.get(run.id)
        reason = (active.interrupt if active else None) or getattr(exc, "reason", "shutdown")
        if reason == "cancelled":
            self._finish(run, RunState.CANCELLED, error=_error("Cancelled", "cancelled by request"))
        # lease_lost: another worker owns the run now; shutdown: released in _shutdown.

    def _failed(self, run: Run, exc: Exception, *, retryable: bool) -> None:
        failures = run.failures + 1
        error = serialization.dumps(error_info(exc), what="error")
        if retryable and failures < run.max_attempts:
            base = self.registry.definitions[run.name].backoff_s
            delay = backoff_delay(failures, base)
            log.info(
                "run %s failed (%s); retry %d in %.1fs",
                *(run.id, exc, failures, delay),
                extra=_fields(run),
            )
            self._finish(
                run,
                RunState.ENQUEUED,
                error=error,
                failures=failures,
                run_after=self.clock.now() + delay,
            )
        else:
            log.warning("run %s of %s failed: %s", run.id, run.name, exc, extra=_fields(run))
            self._finish(run, RunState.FAILED, error=error, failures=failures)

    def _finish(
        self,
        run: Run,
        state: RunState,
        *,
        result: str | None = None,
        error: str | None = None,
        failures: int | None = None,
        run_after: float | None = None,
    ) -> None:
        finished = None if state == RunState.ENQUEUED else self.clock.now()
        self._pending.append(
            Completion(
                run_id=run.id,
                lease_token=run.lease_token,
                state=state,
                finished_at=finished,
                result=result,
                error=error,
                failures=run.failures if failures is None else failures,
                run_after=run_after,
            )
        )
        self._count(run, state)
        self._flush_wanted.set()

    def _count(self, run: Run, state: RunState) -> None:
        s = self.stats
        if state == RunState.SUCCEEDED:
            s.succeeded += 1
            s.by_name[run.name] = s.by_name.get(run.name, 0) + 1
        elif state == RunState.FAILED:
            s.failed += 1
        elif state == RunState.ENQUEUED:
            s.retried += 1
        elif state == RunState.CANCELLED:
            s.cancelled += 1

    # -- background loops --------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await self._after_burst()
            self._flush_wanted.clear()
            try:
                await self._flush_now()
            except Exception as exc:  # keep the outcomes and try again; their leases are renewed
                await asyncio.sleep(self._outage.failed(exc))
                self._flush_wanted.set()
            else:
                self._db_works()

    async def _after_burst(self) -> None:
        """Runs leased ahead of their time (a burst of scheduled runs falling due together)
        begin before outcomes are written, waiting one lookahead at most. A write takes CPU
        on a database thread, which shares the GIL with the loop in turns and would delay
        the burst's last runs by as much: at the tick, 1,000 runs begin in one loop turn."""
        if not self._burst_begun.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._burst_begun.wait(), self.options.lookahead_s)

    async def _flush_now(self) -> None:
        # One writer at a time: a flush at shutdown waits for the one in flight, which took
        # its batch from _pending, instead of finding _pending empty and cancelling it.
        async with self._flush_lock:
            if self.audit and not (self._pending or self._executions):
                await self.db(self.audit.write)
            while self._pending or self._executions:
                self._flushing, self._pending = self._pending[:1000], self._pending[1000:]
                self._flushing_executions, self._executions = self._executions, []
                try:
                    await self.db(self._write_outcomes, self._flushing, self._flushing_executions)
                except BaseException:
                    self._pending = self._flushing + self._pending
                    self._executions = self._flushing_executions + self._executions
                    raise
                finally:
                    self._flushing, self._flushing_executions = [], []

    def _write_outcomes(
        self, completions: Sequence[Completion], executions: Sequence[Execution]
    ) -> None:
        """Record outcomes and the pending run starts in one transaction (a database thread):
        one commit per flush, and a start is never missing beside its outcome. Run starts
        taken but not committed go back to the batch."""
        with self.audit.taken() as starts:
            self.store.complete(completions, executions, audit=starts)

    def write_audit(self, entries: Sequence[AuditEntry] = ()) -> None:
        """Append the pending run starts, then `entries`, in one transaction (blocking: call
        it from a database thread). Everything a run audits goes through here, so that a
        run's own records always follow its run.started record in the chain."""
        self.audit.write(entries)

    def _want_flush(self) -> None:
        self._flush_wanted.set()

    def _db_works(self) -> None:
        """A loop's database call succeeded: ends an outage, saying what it cost the runs."""
        if self._outage.down:
            lost, self._abandoned_in_outage = self._abandoned_in_outage, 0
            self._outage.worked(
                f"{lost} run attempts it interrupted resume from their checkpoints" if lost else ""
            )

    def held_run_ids(self) -> list[str]:
        """Runs this worker is responsible for: executing, prefetched, or awaiting a write."""
        ids = list(self._active)
        ids += [c.run_id for c in self._flushing] + [c.run_id for c in self._pending]
        return ids

    def abandon(self) -> int:
        """Stop-now path (a second signal): record finished outcomes, hand the rest back.

        Synchronous, for a signal handler that exits right after; returns runs released."""
        now = self.clock.now()
        with contextlib.suppress(Exception):  # unrecorded outcomes are re-run: at-least-once
            self.store.complete(
                self._flushing + self._pending, self._flushing_executions + self._executions
            )
        return self.store.release(self.id, list(self._active), now)

    async def _heartbeat_loop(self) -> None:
        every = max(0.05, self.options.lease_s / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self._heartbeat()
                await self.db(self.store.reap_expired, self.clock.now(), self.options.max_reclaims)
                # Also learns of waits parked by other processes while this one is busy.
                self._wait_due = await self.db(self.store.wake_due_waits, self.clock.now())
            except Exception as exc:  # a database blip must not kill the worker; leases have slack
                self._outage.failed(exc)  # its own pace is back-off enough
            else:
                self._db_works()

    async def _periodic_loop(self, every: float, check: Callable[[], object]) -> None:
        # Real time, not the app's clock: under a FakeClock it would never come round.
        while True:
            await asyncio.sleep(every)
            try:
                await self.db(check)
            except Exception as exc:  # a check must never take the worker down
                self._outage.failed(exc)  # the worker's one outage: its own pace is back-off
            else:
                self._db_works()

    async def _heartbeat(self) -> None:
        # Judge only runs claimed before this heartbeat was sent: a claim that commits while
        # it is in flight (another db thread) is missing from its answer but not lost.
        claimed_before = dict(self._active)
        held = {
            run_id: (token, cancel)
            for run_id, token, cancel in await self.db(
                self.store.heartbeat,
                self.id,
                self.held_run_ids(),
                self.clock.now(),
                self.options.lease_s,
            )
        }
        for run_id, active in claimed_before.items():
            if self._active.get(run_id) is not active:
                continue  # it ended while the heartbeat was in flight
            lease = held.get(run_id)
            if lease is None or lease[0] != active.run.lease_token:
                self._interrupt(active, "lease_lost")
            elif lease[1]:
                self._interrupt(active, "cancelled")

    def _interrupt(self, active: _Active, reason: str) -> None:
        if active.interrupt is None:
            log.info("interrupting run %s: %s", active.run.id, reason)
            active.interrupt = reason
            active.task.cancel()

    # -- start and stop ----------------------------------------------------------------

    def _setup_threads(self) -> None:
        threads = self.options.db_threads or (1 if self.store.dialect.name == "sqlite" else 4)
        self._db_pool = DatabaseThreads(threads, name="rota-db")  # fewer wake-ups per call
        assert self._loop is not None
        # Sync user functions run on the loop's default executor: size it to the concurrency.
        self._loop.set_default_executor(
            ThreadPoolExecutor(self.options.concurrency + 4, thread_name_prefix="rota-user")
        )

    def _start_listener(self) -> threading.Event | None:
        listen = getattr(self.store.dialect, "listen", None)
        if listen is None:
            return None
        stop = threading.Event()
        threading.Thread(
            target=self._listen, args=(listen, stop), name="rota-listen", daemon=True
        ).start()
        return stop

    def _listen(self, listen: Callable[[], Any], stop: threading.Event) -> None:
        # NOTIFY is only a hint to claim sooner; polling covers anything it misses.
        while not stop.is_set():
            try:
                conn = listen()
                with conn:
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except Exception:
                log.debug("wake-up listener reconnecting", exc_info=True)
                stop.wait(1.0)

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        # Prefetched runs never begun are handed back at once; they leave _active as soon
        # as they are interrupted, so remember them for the release below.
        held = [a for a in self._active.values() if not a.started]
        for active in held:
            self._interrupt(active, "shutdown")
        if self._active:
            _, pending = await asyncio.wait(
                [a.task for a in self._active.values()], timeout=self.options.shutdown_grace_s
            )
            overdue = [a for a in self._active.values() if a.task in pending]
            for active in overdue:
                self._interrupt(active, "shutdown")
            await asyncio.gather(*(a.task for a in overdue), return_exceptions=True)
            held += overdue
        if held:
            try:
                released = await self.db(
                    self.store.release, self.id, [a.run.id for a in held], self.clock.now()
                )
                self.stats.released += released
            except Exception as exc:
                log.warning(
                    "could not hand back %d runs at shutdown (%s); the reaper queues them "
                    "again when their leases expire",
                    len(held),
                    exc,
                )
        await self._last_flush()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def _last_flush(self) -> None:
        """Record the outcomes left, trying for up to the shutdown grace while the database
        is unavailable; past that, their runs run again elsewhere (at-least-once)."""
        give_up = time.monotonic() + self.options.shutdown_grace_s
        while True:
            try:
                await self._flush_now()
                return
            except Exception as exc:
                delay = self._outage.failed(exc)
                if time.monotonic() + delay > give_up:
                    log.warning(
                        "%d run outcomes not recorded at shutdown (%s); those runs run again "
                        "when their leases expire",
                        len(self._pending),
                        exc,
                    )
                    return
                await asyncio.sleep(delay)


def _fields(run: Run) -> dict[str, str]:
    """The run's fields on a line logged after its execution's log context has closed (as
    `--log-format json` gives every line about a run: rota.observability.logs)."""
    fields = {"run_id": run.id, "job": run.name}
    if run.principal:
        fields["principal"] = run.principal
    return fields


def _no_gc_this_turn(loop: asyncio.AbstractEventLoop) -> None:
    """No garbage collection while the runs just woken begin: it is back on in the next
    loop turn, after them. A burst's runs keep their frames alive until their bookkeeping
    (Worker._let_burst_begin), so without this 1,000 starts set off about 40 collections,
    now and then a full one of 20-30 ms, between the first start and the last."""
    if gc.isenabled():
        gc.disable()
        _gc_paused.append(True)
        loop.call_soon(_gc_back_on)


def _gc_back_on() -> None:
    if _gc_paused:
        _gc_paused.clear()
        gc.enable()


# True while _no_gc_this_turn has collection off; a worker whose loop ends before the next
# turn turns it back on as it stops (Worker.run), so the process is never left without it.
_gc_paused: list[bool] = []


def _store_failure(exc: BaseException) -> StoreUnavailable | None:
    """The database failure behind an error, if any: user code may have wrapped it
    (`raise MyError(...) from exc`), raised while handling it, or grouped it."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, StoreUnavailable):
            return error
        if isinstance(error, StoreLost):
            return error.cause
        if isinstance(error, BaseExceptionGroup):
            todo.extend(error.exceptions)
        todo.extend(e for e in (error.__cause__, error.__context__) if e is not None)
    return None


def _error(kind: str, message: str) -> str:
    return serialization.dumps({"type": kind, "message": message}, what="error")
