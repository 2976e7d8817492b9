"""The worker: claims runs with a lease, executes them, heartbeats, and records outcomes.

Claims and completions are batched: a claim asks for as many runs as there are free slots,
and completions queue up while a write is in flight and go out together. A run whose lease
expires (its worker was killed) is requeued by any worker's reaper and resumes from its
checkpoints elsewhere; every write a worker makes is fenced by the run's lease token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import serialization
from ..backoff import backoff_delay
from ..calls import call_user, error_info
from ..durable import RunContext, WaitParked
from ..errors import RunInterrupted
from ..identity.directory import directory_for
from ..identity.principals import PrincipalDisabled, UnknownPrincipal
from ..identity.runs import run_refused, run_started
from ..ids import new_id
from ..model import Completion, Run, RunState
from ..storage.audit import AuditEntry

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("rota.worker")


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 16
    prefetch: int | None = None  # runs leased ahead of free slots; default: = concurrency
    lease_s: float = 30.0
    poll_interval_s: float = 1.0
    claim_batch: int = 200
    # Runs due within this window are claimed ahead and started at their time, so that a
    # burst of scheduled runs does not wait behind its own claims.
    lookahead_s: float = 0.25
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
    by_name: dict[str, int] = field(default_factory=dict)


@dataclass
class _Active:
    run: Run
    task: asyncio.Task[None]
    interrupt: str | None = None
    started: bool = False  # holds an execution slot (else still waiting in the prefetch buffer)


class Worker:
    def __init__(self, app: App, options: WorkerOptions | None = None, **overrides: Any) -> None:
        self.app = app
        self.options = options or WorkerOptions(**overrides)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.store = app.store
        self.clock = app.clock
        self.stats = WorkerStats()
        self._names = sorted(app.definitions)
        self._limited = any(d.limited for d in app.definitions.values())
        self._active: dict[str, _Active] = {}
        self._pending: list[Completion] = []
        self._flushing: list[Completion] = []  # the batch being written right now
        # Run starts, written in batches with each flush, or sooner by write_audit: the
        # deque takes appends from the loop while a database thread drains it.
        self._audit_entries: collections.deque[AuditEntry] = collections.deque()
        self._audit_lock = threading.Lock()
        self._directory = directory_for(self.store)
        self._stopping = False
        # When a parked run next times out (None: none known; 0: look at the first turn),
        # and when to look again after a sweep left one behind (held by another resolver).
        self._wait_due: float | None = 0.0
        self._sweep_after = 0.0
        self._db_pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Work until stop() (or, with until_idle, until no queued or running run is left)."""
        self.app.verify_principals()  # a run_as naming no principal fails here, not per run
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._flush_wanted = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._setup_threads()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self.app._wakers.add(self.wake)
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="rota-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="rota-flush"),
        ]
        listener = self._start_listener()
        try:
            await self._claim_loop(until_idle)
        finally:
            await self._shutdown(background)
            if listener:
                listener.set()
            self.app._wakers.discard(self.wake)
            if self._db_pool:
                self._db_pool.shutdown(wait=False)
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
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db_pool, partial(fn, *args))

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self, until_idle: bool) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming, so that a wake-up during the claim counts
            await self._sweep_waits()
            free = self._capacity() - len(self._active)
            try:
                got = await self._claim(free) if free > 0 else 0
            except Exception:  # a database blip: wait a poll interval and try again
                log.exception("claiming runs failed; retrying")
                got = 0
            if got and got >= min(free, self.options.claim_batch):
                continue  # likely more ready: claim again straight away
            if until_idle and not self._active and await self._idle():
                return
            # Busy (slots full, or runs were just claimed): a finishing run or a new one
            # wakes the loop. Only a worker that found nothing asks when to look next.
            wait = await self._idle_wait() if free > 0 and not got else self._busy_wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _capacity(self) -> int:
        # Leasing a few runs ahead of the free slots hides the claim round trip.
        prefetch = self.options.prefetch
        return self.options.concurrency + (
            self.options.concurrency if prefetch is None else prefetch
        )

    async def _claim(self, free: int) -> int:
        want = min(free, self.options.claim_batch)
        now = self.clock.now()
        due_by = now + self.options.lookahead_s
        runs = await self.db(
            partial(self.store.claim, due_by=due_by),
            self.id,
            self._names,
            want,
            now,
            self.options.lease_s,
        )
        if self._limited and len(runs) < want:
            runs += await self.db(
                partial(self.store.claim, limited=True, due_by=due_by),
                self.id,
                self._names,
                want - len(runs),
                now,
                self.options.lease_s,
            )
        for run in runs:
            task = asyncio.create_task(self._slotted(run), name=f"rota-run-{run.id}")
            self._active[run.id] = _Active(run, task)
        self.stats.claimed += len(runs)
        return len(runs)

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
        except Exception:
            log.exception("timing out parked runs failed; retrying")
            self._wait_due = now
        if self._wait_due is not None and self._wait_due <= now:
            self._sweep_after = now + self.options.poll_interval_s

    async def _idle(self) -> bool:
        await self._flush_now()
        counts = await self.db(self.store.count_states, self._names)
        return not counts.get("ENQUEUED") and not counts.get("RUNNING")

    # -- executing ---------------------------------------------------------------------

    async def _slotted(self, run: Run) -> None:
        mine = self._active[run.id]
        try:
            early = run.run_after - self.clock.now()
            if early > 0:  # claimed ahead (lookahead): start at its time, not before
                await asyncio.sleep(min(early, self.options.lookahead_s))
            async with self._slots:
                mine.started = True
                await self._execute(run)
        except asyncio.CancelledError as exc:  # interrupted while waiting for a slot
            self._interrupted(run, exc)
        finally:
            # A run that parked may be woken and claimed again before this task ends.
            if self._active.get(run.id) is mine:
                del self._active[run.id]
            self._wake.set()

    async def _admit(self, run: Run) -> bool:
        """Check the run's principal (unknown or disabled: refused, audited, failed for
        good) and record the start in the audit log."""
        principal = None
        if run.principal is not None:
            try:
                principal = await self.db(self._directory.require, run.principal)
            except (UnknownPrincipal, PrincipalDisabled) as exc:
                self._audit_entries.append(run_refused(run, str(exc)))
                self._failed(run, exc, retryable=False)
                return False
        self._audit_entries.append(run_started(run, principal))
        self._flush_wanted.set()
        return True

    async def _execute(self, run: Run) -> None:
        definition = self.app.definitions[run.name]
        if not await self._admit(run):
            return
        try:
            checkpoints = {}
            if run.attempt > 1:  # a first attempt cannot have checkpoints
                checkpoints = {s.key: s for s in await self.db(self.store.steps, run.id)}
            ctx = RunContext(run, self, checkpoints)
            args = (ctx, run.payload) if definition.takes_payload else (ctx,)
            value = await call_user(
                definition.fn, args, {}, timeout=run.timeout_s, what=f"run of {run.name!r}"
            )
            text = serialization.dumps(value, what=f"the result of {run.name!r}")
            self._finish(run, RunState.SUCCEEDED, result=text)
        except WaitParked as exc:  # WAITING now, without a lease: nothing left to record
            self.stats.parked += 1
            if exc.deadline is not None:
                self._wait_due = min(self._wait_due or exc.deadline, exc.deadline)
        except (asyncio.CancelledError, RunInterrupted) as exc:
            self._interrupted(run, exc)
        except Exception as exc:
            self._failed(run, exc, retryable=getattr(exc, "retryable", True))

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
            base = self.app.definitions[run.name].backoff_s
            delay = backoff_delay(failures, base)
            log.info("run %s failed (%s); retry %d in %.1fs", run.id, exc, failures, delay)
            self._finish(
                run,
                RunState.ENQUEUED,
                error=error,
                failures=failures,
                run_after=self.clock.now() + delay,
            )
        else:
            log.warning("run %s of %s failed: %s", run.id, run.name, exc)
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
            self._flush_wanted.clear()
            try:
                await self._flush_now()
            except Exception:  # keep the outcomes and try again; their leases are renewed
                log.exception("recording run outcomes failed; retrying")
                await asyncio.sleep(self.options.poll_interval_s)
                self._flush_wanted.set()

    async def _flush_now(self) -> None:
        # One writer at a time: a flush at shutdown waits for the one in flight, which took
        # its batch from _pending, instead of finding _pending empty and cancelling it.
        async with self._flush_lock:
            if self._audit_entries:  # before the outcomes: a start is never missing
                await self.db(self.write_audit)
            while self._pending:
                self._flushing, self._pending = self._pending[:1000], self._pending[1000:]
                try:
                    await self.db(self.store.complete, self._flushing)
                except BaseException:
                    self._pending = self._flushing + self._pending
                    raise
                finally:
                    self._flushing = []

    def write_audit(self, entries: Sequence[AuditEntry] = ()) -> None:
        """Append the pending run starts, then `entries`, in one transaction (blocking: call
        it from a database thread). Everything a run audits goes through here, so that a
        run's own records always follow its run.started record in the chain."""
        with self._audit_lock:
            batch: list[AuditEntry] = []
            with contextlib.suppress(IndexError):
                while True:
                    batch.append(self._audit_entries.popleft())
            try:
                self.store.audit_many([*batch, *entries])
            except BaseException:
                self._audit_entries.extendleft(reversed(batch))
                raise

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
            self.store.complete(self._flushing + self._pending)
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
            except Exception:  # a database blip must not kill the worker; leases have slack
                log.exception("heartbeat failed; retrying")

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
        self._db_pool = ThreadPoolExecutor(threads, thread_name_prefix="rota-db")
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
            released = await self.db(
                self.store.release, self.id, [a.run.id for a in held], self.clock.now()
            )
            self.stats.released += released
        await self._flush_now()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


def _error(kind: str, message: str) -> str:
    return serialization.dumps({"type": kind, "message": message}, what="error")
