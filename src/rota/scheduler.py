"""The scheduler: turns time triggers into runs, each (schedule, fire time) exactly once.

Run any number of schedulers (`rota scheduler`, or inside `rota dev`) against one database:
there is no leader. Each pass locks the due schedule rows it can get (SKIP LOCKED), decides
their fire times since the row's cursor (see policies.py), and writes the runs, the tick
records and the new cursor in one transaction. Tick ids are deterministic
(`{schedule}@{fire time}`) and double as the runs' idempotency keys, so even a bug elsewhere
could not make a second run for a tick. Every tick that does not run is recorded with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from .clock import Clock, iso
from .errors import ConfigError, DatabaseError, StoreUnavailable
from .identity.admin import Actor
from .ids import new_id
from .jobs import JobDefinition, notify_channels
from .model import NewRun, Schedule, Tick, TickPlan
from .observability import metrics
from .retention import DAILY_KEY, DAY, PruneReport, RetentionPolicy, prune
from .routines.caps import Admission
from .scheduling.notify import NotifyListener
from .scheduling.policies import Decision, decide
from .scheduling.triggers import NOTIFY_SOURCE, Trigger
from .storage.audit import SCHEDULE_CHANGED
from .storage.capped import DEFERRED
from .storage.outage import Outage
from .storage.schedules import Decide
from .storage.sql import SqlStore

log = logging.getLogger("rota.scheduler")

_US = timedelta(microseconds=1)
PAUSED_RECHECK_S = 60.0  # a paused schedule records its skipped ticks in ranges this long
CAPPED = "capped"  # the reason of a tick a run cap dropped (skipped) or deferred (enqueued)
PRUNE_CHECK_S = 60.0  # how often a scheduler looks whether retention's daily turn is due


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    job: JobDefinition
    trigger: Trigger  # fires on time: fire_times, next_fire, key
    suppress_after_event_s: float | None = None  # from combined(..., suppress_after_event=)


class SchedulerHost(Protocol):
    """What the scheduler needs of the App (which satisfies it): the definitions, the store
    its schedules live in, the clock, and `emit` to store a NOTIFY as an event."""

    @property
    def definitions(self) -> Mapping[str, JobDefinition]: ...
    @property
    def store(self) -> SqlStore: ...  # the schedule queries (a narrower protocol: step S5)

    clock: Clock

    def emit(self, event: str, payload: Any = None, *, source: str = "app") -> object: ...

    def retention_policy(self) -> RetentionPolicy: ...

    @property
    def admission(self) -> Admission: ...  # the run caps every enqueue passes (app.admission)


def schedule_specs(definitions: Iterable[JobDefinition]) -> dict[str, ScheduleSpec]:
    """One schedule per time trigger: named after the job (`job#2`, ... for more than one)."""
    specs = {}
    for job in definitions:
        time_triggers = [pair for t in job.triggers for pair in t.schedules()]
        for index, (trigger, suppress) in enumerate(time_triggers, start=1):
            name = job.name if index == 1 else f"{job.name}#{index}"
            specs[name] = ScheduleSpec(name, job, trigger, suppress)
    return specs


class Scheduler:
    def __init__(
        self,
        app: SchedulerHost,
        *,
        batch: int = 500,
        max_sleep_s: float = 1.0,
        lookahead_s: float = 0.5,
        prune_every_s: float = DAY,
    ) -> None:
        self.app = app
        self.store = app.store
        self.clock = app.clock
        self.admission = app.admission
        self.specs = schedule_specs(app.definitions.values())
        self._watch_overlap = [n for n, s in self.specs.items() if s.job.overlap != "allow"]
        self._watch_events = {
            n: s.job.name for n, s in self.specs.items() if s.suppress_after_event_s is not None
        }
        self.batch = batch
        self.max_sleep_s = max_sleep_s
        # Fire times up to this far ahead are decided early and enqueued due at their time,
        # so the decision is off the critical path of a burst of ticks.
        self.lookahead_s = lookahead_s
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self._stop = asyncio.Event()
        self._outage = Outage(log, "scheduler", base_s=max_sleep_s, cap_s=max(5.0, max_sleep_s))
        # Retention runs in the background, once per prune_every_s across all schedulers.
        self.prune_every_s = prune_every_s
        self._pruning: asyncio.Future[None] | None = None
        self._prune_checked = -PRUNE_CHECK_S

    # -- one pass ----------------------------------------------------------------------

    def sync(self) -> list[str]:
        """Register the app's schedules; new or redefined ones start from now."""
        now = self.clock.now()
        rows = [
            Schedule(
                name=s.name,
                job=s.job.name,
                definition=s.trigger.key(),
                description=s.trigger.describe(),
                paused=False,
                cursor_at=now,
                next_fire_at=_ts(s.trigger.next_fire(_dt(now) - _US)),
                created_at=now,
                updated_at=now,
            )
            for s in self.specs.values()
        ]
        changed = self.store.sync_schedules(rows)
        for name in changed:
            log.info("schedule %s registered: %s", name, self.specs[name].trigger.describe())
        return changed

    def tick(self) -> int:
        """Decide every due schedule now; returns how many schedules were decided."""
        if not self.specs:
            return 0
        names, total = list(self.specs), 0
        now = self.clock.now()
        while True:
            done = self.store.process_due(
                names,
                now,
                self.batch,
                self._plan_for(now),
                self._watch_overlap,
                self._watch_events,
                due_by=now + self.lookahead_s,
            )
            total += done
            if done < self.batch:
                return total

    def _plan_for(self, now: float) -> Decide:
        def plan(
            schedule: Schedule, active: list[dict[str, Any]], last_event_at: float | None
        ) -> TickPlan:
            return self._plan(schedule, active, last_event_at, now)

        return plan

    def _plan(
        self,
        schedule: Schedule,
        active: list[dict[str, Any]],
        last_event_at: float | None,
        now: float,
    ) -> TickPlan:
        spec = self.specs[schedule.name]
        if spec.trigger.key() != schedule.definition:  # redefined elsewhere: sync decides
            return TickPlan(schedule.name, schedule.cursor_at, None, (), ())
        now_dt, horizon = _dt(now), now + self.lookahead_s
        fires = spec.trigger.fire_times(_dt(schedule.cursor_at), _dt(horizon) + _US)
        decision = decide(
            spec.job,
            fires,
            active,
            now_dt,
            paused=schedule.paused,
            suppress=_suppression(spec, last_event_at),
        )
        next_fire = _ts(spec.trigger.next_fire(_dt(horizon)))
        if schedule.paused and next_fire is not None:
            next_fire = max(next_fire, now + PAUSED_RECHECK_S)
        runs = [self._run(spec, f, now) for f in decision.enqueue]
        runs, deferred = self._admit(decision, runs, now)
        return TickPlan(
            schedule=schedule.name,
            cursor_at=horizon + 1e-6,
            next_fire_at=next_fire,
            runs=tuple(runs),
            ticks=self._ticks(spec.name, decision, runs, now, deferred),
            cancel_run_ids=tuple(decision.cancel),
        )

    def _run(self, spec: ScheduleSpec, fire: datetime, now: float) -> NewRun:
        # Runs are due at their fire time, so lateness is started_at - run_after.
        return spec.job.new_run(
            None,
            now=now,
            trigger="schedule",
            trigger_ref=spec.name,
            idempotency_key=tick_id(spec.name, fire),
            delay_s=fire.timestamp() - now,
        )

    def _admit(
        self, decision: Decision, runs: list[NewRun], now: float
    ) -> tuple[list[NewRun], set[str]]:
        """The app's admission policy (run caps), consulted here in the tick's transaction
        like every other enqueue: a dropped tick moves to the decision's skipped ticks with
        reason "capped"; a deferred one stays enqueued, due later. Returns the runs to
        insert and the ids of the deferred ones. Either way the cap's own record is stored
        too (rota runs list --dropped), and a tick is never decided twice: the cursor moves
        past it and its run keeps the tick id as its idempotency key."""
        admitted = self.admission.admit(runs, now)
        if not admitted.held:
            return runs, set()
        kept = {run.id: run for run in admitted.runs}
        fires, out = [], []
        for fire, run in zip(decision.enqueue, runs, strict=True):
            if run.id in kept:
                fires.append(fire)
                out.append(kept[run.id])
            else:
                decision.skip(CAPPED, [fire])
        decision.enqueue[:] = fires
        return out, {r.id for r in admitted.held if r.outcome == DEFERRED}

    def _ticks(
        self,
        schedule: str,
        decision: Decision,
        runs: list[NewRun],
        now: float,
        deferred: Collection[str] = (),
    ) -> tuple[Tick, ...]:
        ticks = [
            self._tick(
                schedule, [fire], "enqueued", CAPPED if run.id in deferred else None, run.id, now
            )
            for fire, run in zip(decision.enqueue, runs, strict=True)
        ]
        for reason, times in decision.skipped.items():
            ticks.append(self._tick(schedule, times, "skipped", reason, None, now))
        _observe(schedule, decision, now)
        return tuple(ticks)

    def _tick(
        self,
        schedule: str,
        times: list[datetime],
        outcome: str,
        reason: str | None,
        run_id: str | None,
        now: float,
    ) -> Tick:
        first, last = min(times), max(times)
        return Tick(
            id=tick_id(schedule, first),
            schedule=schedule,
            fire_at=first.timestamp(),
            last_fire_at=last.timestamp(),
            ticks=len(times),
            outcome=outcome,
            reason=reason,
            run_id=run_id,
            decided_at=now,
            decided_by=self.id,
        )

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Sync, then decide due schedules until stop(); sleeps until the next fire time.

        The database going away stops nothing: a failed pass (or sync) logs one line for the
        whole outage, backs off (capped, with jitter) and tries again; the next pass after
        it is back decides every tick that fell due meanwhile, by each schedule's policy."""
        loop = asyncio.get_running_loop()
        if not await self._until_synced(loop):
            return  # stopped before the database came back
        listener = self._start_listener()
        try:
            await self._loop(loop)
        finally:
            if listener is not None:
                await loop.run_in_executor(None, listener.stop)

    async def _until_synced(self, loop: asyncio.AbstractEventLoop) -> bool:
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(None, self.sync)
            except DatabaseError as exc:
                if not isinstance(exc, StoreUnavailable):
                    raise  # e.g. a schema too new for this rota: waiting would not help
                await self._pause(self._outage.failed(exc))
            else:
                self._outage.worked()
                return True
        return False

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _start_listener(self) -> NotifyListener | None:
        channels = notify_channels(self.app.definitions.values())
        listen = getattr(self.store.dialect, "listen_on", None)
        if not channels:
            return None
        if listen is None:
            log.warning("on_notify triggers need PostgreSQL; %s is not", self.store.url.dialect)
            return None

        def deliver(channel: str, payload: Any) -> None:
            self.app.emit(channel, payload, source=NOTIFY_SOURCE)

        return NotifyListener(listen, channels, deliver).start()

    async def _loop(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(None, self.tick)
                due = await loop.run_in_executor(None, self.store.next_due, list(self.specs))
            except Exception as exc:  # a database blip: the cursor makes the next pass catch up
                await self._pause(self._outage.failed(exc))
                continue
            self._outage.worked()
            self._start_prune(loop)
            wait = self.max_sleep_s if due is None else due - self.lookahead_s - self.clock.now()
            await self._pause(max(0.0, min(wait, self.max_sleep_s)))

    def stop(self) -> None:
        self._stop.set()

    # -- retention ---------------------------------------------------------------------

    def prune_if_due(self) -> PruneReport | None:
        """Apply the app's retention when its turn has come: once per prune_every_s over
        all schedulers (the turn is claimed in rota_meta, so only one of them prunes, and
        pruning twice would find nothing left anyway)."""
        policy = self.app.retention_policy()
        if not policy.active:
            return None
        now = self.clock.now()
        if not self.store.claim_due(DAILY_KEY, now, now + self.prune_every_s):
            return None
        report = prune(self.store, policy, now, stopping=self._stop.is_set)
        log.info(
            "retention: pruned %d runs, %d events, %d audit records",
            report.runs,
            report.events,
            report.audit_records,
        )
        return report

    def _start_prune(self, loop: asyncio.AbstractEventLoop) -> None:
        # Checked once a minute, in a thread of its own, so that ticks never wait for it.
        running = self._pruning is not None and not self._pruning.done()
        if running or loop.time() - self._prune_checked < PRUNE_CHECK_S:
            return
        self._prune_checked = loop.time()
        self._pruning = loop.run_in_executor(None, self._prune_logged)

    def _prune_logged(self) -> None:
        try:
            self.prune_if_due()
        except Exception as exc:  # the next turn tries again; scheduling goes on
            log.warning("retention: pruning failed, trying again later: %s", exc)

    # -- operator actions --------------------------------------------------------------

    def backfill(
        self,
        name: str,
        start: datetime,
        end: datetime,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 500,
        *,
        fires: Sequence[datetime] | None = None,
    ) -> int:
        """Enqueue a run for every fire time in [start, end) that has none yet (or for each of
        `fires`, when the caller has listed them: see backfill_times)."""
        spec = self.spec(name)
        if fires is None:
            fires = spec.trigger.fire_times(start, end)
        created = 0
        for offset in range(0, len(fires), chunk):
            part = fires[offset : offset + chunk]
            now = self.clock.now()
            runs = [self._run(spec, f, now) for f in part]
            ticks = [
                self._tick(name, [f], "enqueued", "backfill", run.id, now)
                for f, run in zip(part, runs, strict=True)
            ]
            created += self.store.record_ticks(runs, ticks)
            if progress:
                progress(offset + len(part), len(fires))
        return created

    def spec(self, name: str) -> ScheduleSpec:
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UnknownSchedule(f"no schedule named {name!r}; known: {known}")
        return spec

    def backfill_times(
        self, name: str, start: datetime, end: datetime, *, limit: int
    ) -> list[datetime]:
        """The fire times in [start, end), at most `limit` + 1 of them: one past the limit
        says that there are more, without listing the millions a wide range may hold."""
        trigger = self.spec(name).trigger
        found: list[datetime] = []
        after = start - _US
        while len(found) <= limit:
            fire = trigger.next_fire(after)
            if fire is None or fire >= end:
                break
            found.append(fire)
            after = fire
        return found

    def plan_backfill(
        self, name: str, start: datetime, end: datetime, *, limit: int
    ) -> BackfillPlan:
        """What backfill(name, start, end) would do, without doing it (a dry run)."""
        fires = self.backfill_times(name, start, end, limit=limit)
        return BackfillPlan(name, tuple(fires), self.backfilled(name, fires[:limit]))

    def backfilled(self, name: str, fires: Sequence[datetime]) -> dict[str, str]:
        """{tick id: run id} of the fire times among `fires` that already have a run (which
        a backfill leaves alone)."""
        job = self.spec(name).job.name
        ids = [tick_id(name, f) for f in fires]
        found: dict[str, str] = {}
        for offset in range(0, len(ids), 1000):
            found.update(self.store.keyed_runs(job, ids[offset : offset + 1000]))
        return found

    # -- what operators see ------------------------------------------------------------

    def overview(self, count: int = 3) -> list[ScheduleView]:
        """Every schedule of the app's code or the store, by name, with its next `count`
        fire times (none while paused) and its last tick."""
        rows = {s.name: s for s in self.store.schedules()}
        now = _dt(self.clock.now())
        return [
            self._view(name, self.specs.get(name), rows.get(name), now, count)
            for name in sorted(set(self.specs) | set(rows))
        ]

    def _view(
        self,
        name: str,
        spec: ScheduleSpec | None,
        row: Schedule | None,
        now: datetime,
        count: int,
    ) -> ScheduleView:
        paused = bool(row and row.paused)
        state = "active" if row else "unregistered"
        if spec is None:
            state = "not_in_code"
        elif paused:
            state = "paused"
        upcoming: list[datetime] = []
        if spec is not None and not paused:
            after = now
            while len(upcoming) < count and (fire := spec.trigger.next_fire(after)) is not None:
                upcoming.append(fire)
                after = fire
        zone = ZoneInfo(getattr(spec.trigger, "tz", "UTC")) if spec else UTC
        last = self.store.ticks(name, limit=1)
        return ScheduleView(
            name=name,
            job=spec.job.name if spec else (row.job if row else None),
            trigger=spec.trigger.describe() if spec else (row.description if row else "-"),
            state=state,
            paused=paused,
            next_fires=tuple(f.astimezone(zone) for f in upcoming),
            last_tick=last[0] if last else None,
        )


class UnknownSchedule(ConfigError, LookupError):
    """No schedule of that name (in the app's code, or in the store)."""


def set_paused(store: SqlStore, name: str, paused: bool, now: float, actor: Actor) -> None:
    """Pause or resume a stored schedule (`rota schedules pause`, POST .../pause), audited:
    a schedule that stopped firing should say who stopped it."""
    if not store.set_paused(name, paused, now):
        known = ", ".join(s.name for s in store.schedules()) or "none registered yet"
        raise UnknownSchedule(f"no schedule named {name!r}; known: {known}")
    audit_change(store, actor, name, {"paused": paused})


def audit_change(store: SqlStore, actor: Actor, name: str, detail: dict[str, Any]) -> None:
    """Record a change an operator made to a schedule (schedule.changed)."""
    store.audit(actor.name, SCHEDULE_CHANGED, actor_kind=actor.kind, subject=name, detail=detail)


def audit_backfill(
    store: SqlStore, actor: Actor, name: str, start: datetime, end: datetime, enqueued: int
) -> None:
    window = {"from": iso(start.timestamp()), "to": iso(end.timestamp())}
    audit_change(store, actor, name, {"backfill": window, "enqueued": enqueued})


@dataclass(frozen=True)
class BackfillPlan:
    """The fire times of a backfill's range (at most its limit + 1: more than the limit
    means the range holds more), and which of them already have a run."""

    schedule: str
    fires: tuple[datetime, ...]
    existing: Mapping[str, str]  # tick id -> run id

    @property
    def todo(self) -> list[datetime]:
        """The fire times a backfill would enqueue a run for."""
        return [f for f in self.fires if tick_id(self.schedule, f) not in self.existing]


@dataclass(frozen=True)
class ScheduleView:
    """One schedule as `rota schedules list` and GET /api/schedules show it. `state`:
    active, paused, unregistered (in the code, no scheduler has seen it yet) or not_in_code
    (stored, but the app no longer defines it)."""

    name: str
    job: str | None
    trigger: str
    state: str
    paused: bool
    next_fires: tuple[datetime, ...]  # in the schedule's time zone
    last_tick: Tick | None


def _observe(schedule: str, decision: Decision, now: float) -> None:
    """Prometheus: how late each tick was enqueued, and the ticks skipped, by reason.
    Counted when decided; a pass whose transaction then fails is decided again and counted
    again, which a histogram of lateness can bear."""
    for fire in decision.enqueue:
        metrics.observe_tick(schedule, now - fire.timestamp())
    for reason, times in decision.skipped.items():
        metrics.observe_skipped(schedule, reason, len(times))


def _suppression(spec: ScheduleSpec, last_event_at: float | None) -> tuple[float, float] | None:
    if spec.suppress_after_event_s is None or last_event_at is None:
        return None
    return last_event_at, spec.suppress_after_event_s


def tick_json(t: Tick) -> dict[str, Any]:
    """A tick as `rota schedules ticks --json` and the HTTP API show it."""
    return {
        "id": t.id,
        "schedule": t.schedule,
        "fire_at": iso(t.fire_at),
        "last_fire_at": iso(t.last_fire_at),
        "ticks": t.ticks,
        "outcome": t.outcome,
        "reason": t.reason,
        "run_id": t.run_id,
        "decided_at": iso(t.decided_at),
        "decided_by": t.decided_by,
    }


def tick_id(schedule: str, fire: datetime) -> str:
    return f"{schedule}@{fire.astimezone(UTC).isoformat()}"


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(round(ts, 6), tz=UTC)


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()
