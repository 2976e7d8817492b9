"""Run caps, enforced when runs are enqueued: a policy around the App's enqueue, never a
branch in the queue or the worker.

`RunCaps` holds the caps of each capped definition (a routine's `caps`, `cooldown` and
`stop_after`). `admit(runs)` returns the runs to put on the queue: a run over a cap is dropped,
or deferred (its `run_after` moved to the start of the first later window with room). Every
run held back is recorded with its reason (storage/capped.py), counted in
rota_runs_capped_total and logged; none is silent.

Windows are UTC clock hours and UTC days, like a subscription's. A window's use is the number
of runs due in it (deferred runs count in the window they were moved to) plus the runs
admitted earlier in the same call.

Atomic: `admit` is called inside the transaction that then inserts the runs it admits (every
enqueue path of the App, and the scheduler's tick transaction), and first takes the caps'
lock for the rest of that transaction (PostgreSQL: a transaction-scoped advisory lock;
SQLite: the IMMEDIATE transaction already holds the database's write lock). Two processes
enqueueing at the same instant therefore count one after the other, and cannot both take a
cap's last place. One lock for all caps, taken only when a capped run is enqueued: capped
runs are few by nature, and a single lock can never deadlock with another.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from prometheus_client import Counter

from ..errors import RotaError
from ..model import NewRun
from ..storage.capped import DEFERRED, DROPPED, CappedRun

log = logging.getLogger(__name__)

CAPPED_RUNS = Counter(
    "rota_runs_capped",
    "Runs a cap dropped or deferred when they were enqueued (rota runs list --dropped).",
    ["name", "outcome", "cap"],
)
HOUR, DAY = 3600.0, 86400.0
MAX_DEFER_WINDOWS = 366  # a run deferred further than this is dropped instead


@dataclass(frozen=True)
class Admitted:
    """What a cap check let through (deferred runs among them), and what it held back."""

    runs: list[NewRun]
    held: list[CappedRun]

    def dropped(self) -> list[CappedRun]:
        return [r for r in self.held if r.outcome == DROPPED]


class RunDropped(RotaError):
    """The run asked for was over a cap and dropped (and recorded: rota runs list --dropped)."""

    def __init__(self, record: CappedRun) -> None:
        self.record = record
        super().__init__(
            f"run of {record.name!r} dropped: {record.reason} (recorded as {record.id}; "
            "see `rota runs list --dropped`)"
        )


class CapStore(Protocol):
    """What caps need of the store: the use of a window, the last run, and the record."""

    def count_runs_due(
        self, start: float, end: float, *, name: str | None = None, principal: str | None = None
    ) -> int: ...

    def last_run_created(self, name: str) -> float | None: ...

    def record_capped(self, records: Sequence[CappedRun]) -> None: ...

    def lock_caps(self) -> None: ...


class Admission(Protocol):
    """The policy every enqueue consults, inside the transaction that inserts the runs: the
    runs to put on the queue, and those held back (recorded). The App's is its RunCaps."""

    def admit(self, runs: Sequence[NewRun], now: float) -> Admitted: ...


@dataclass(frozen=True)
class Caps:
    """The caps of one definition. `principal` names whose per-principal caps apply."""

    name: str
    principal: str | None
    per_hour: int | None = None
    per_day: int | None = None
    principal_per_hour: int | None = None
    principal_per_day: int | None = None
    over: str = "drop"  # drop | defer
    cooldown_s: float | None = None
    stop_after: float | None = None

    def limits(self) -> list[tuple[str, int, float, str | None, str | None]]:
        """(cap name, limit, window seconds, routine, principal) for each cap set."""
        found: list[tuple[str, int, float, str | None, str | None]] = []
        for cap, limit, window, per_principal in (
            ("per_hour", self.per_hour, HOUR, False),
            ("per_day", self.per_day, DAY, False),
            ("principal_per_hour", self.principal_per_hour, HOUR, True),
            ("principal_per_day", self.principal_per_day, DAY, True),
        ):
            if limit is None or (per_principal and self.principal is None):
                continue
            who = (None, self.principal) if per_principal else (self.name, None)
            found.append((cap, limit, window, *who))
        return found


class RunCaps:
    """The enqueue policy: `admit(runs, now)` -> the runs to queue (see the module doc)."""

    def __init__(self, store: Callable[[], CapStore]) -> None:
        self._store = store
        self.caps: dict[str, Caps] = {}

    def set(self, caps: Caps) -> None:
        self.caps[caps.name] = caps

    def forget(self, name: str) -> None:
        self.caps.pop(name, None)

    def admit(self, runs: Sequence[NewRun], now: float) -> Admitted:
        """Call it inside the transaction that inserts the admitted runs (see the module
        doc): it holds the caps' lock until that transaction ends."""
        if not any(r.name in self.caps for r in runs):
            return Admitted(list(runs), [])
        store = self._store()
        store.lock_caps()
        admitted: list[NewRun] = []
        held: list[CappedRun] = []
        taken: Tally[tuple[str, str | None, str | None, float]] = Tally()
        for run in runs:
            caps = self.caps.get(run.name)
            if caps is None:
                admitted.append(run)
                continue
            decided = _decide(store, caps, run, now, taken)
            if isinstance(decided, CappedRun):
                held.append(decided)
                if decided.outcome == DROPPED:
                    continue
                run = replace(run, run_after=decided.deferred_to or run.run_after)
            _take(caps, run, taken)
            admitted.append(run)
        if held:
            store.record_capped(held)
            for record in held:
                cap = record.reason.split(" ", 1)[0]
                CAPPED_RUNS.labels(record.name, record.outcome, cap).inc()
                log.warning(
                    "run %s of %s %s: %s", record.id, record.name, record.outcome, record.reason
                )
        return Admitted(admitted, held)


def _decide(
    store: CapStore,
    caps: Caps,
    run: NewRun,
    now: float,
    taken: Tally[tuple[str, str | None, str | None, float]],
) -> NewRun | CappedRun:
    """The run unchanged when every cap has room; else its record (dropped or deferred)."""
    if caps.stop_after is not None and run.run_after >= caps.stop_after:
        return _record(run, DROPPED, "stop_after passed: the routine enqueues no more runs", now)
    if caps.cooldown_s is not None:
        last = store.last_run_created(caps.name)
        if _in_batch(taken, caps):  # a run admitted earlier in this call starts it again
            last = now
        if last is not None and now - last < caps.cooldown_s:
            wait_until = last + caps.cooldown_s
            if caps.over == "defer":
                return _record(run, DEFERRED, f"cooldown {caps.cooldown_s:g}s", now, wait_until)
            return _record(run, DROPPED, f"cooldown {caps.cooldown_s:g}s since the last run", now)
    due, full_reason = run.run_after, ""
    for _ in range(MAX_DEFER_WINDOWS):
        full = _full_cap(store, caps, due, taken)
        if full is None:
            if due == run.run_after:
                return run
            return _record(run, DEFERRED, f"{full_reason} used up", now, due)
        cap, window_end = full
        full_reason = cap
        if caps.over == "drop":
            return _record(run, DROPPED, f"{cap} used up", now)
        due = window_end
    return _record(run, DROPPED, f"{full_reason} used up for {MAX_DEFER_WINDOWS} windows", now)


def _full_cap(
    store: CapStore,
    caps: Caps,
    due: float,
    taken: Tally[tuple[str, str | None, str | None, float]],
) -> tuple[str, float] | None:
    """The first cap with no room in the window holding `due`: (its name and limit, the
    window's end); None when every cap has room."""
    for cap, limit, size, name, principal in caps.limits():
        start = due - due % size
        used = store.count_runs_due(start, start + size, name=name, principal=principal)
        used += taken[(cap, name, principal, start)]
        if used >= limit:
            return f"{cap} {limit}", start + size
    return None


def _take(caps: Caps, run: NewRun, taken: Tally[tuple[str, str | None, str | None, float]]) -> None:
    for cap, _, size, name, principal in caps.limits():
        start = run.run_after - run.run_after % size
        taken[(cap, name, principal, start)] += 1
    taken[("batch", caps.name, None, 0.0)] += 1


def _in_batch(taken: Tally[tuple[str, str | None, str | None, float]], caps: Caps) -> bool:
    """Whether a run of this definition was admitted earlier in the same call."""
    return taken[("batch", caps.name, None, 0.0)] > 0


def _record(
    run: NewRun, outcome: str, reason: str, now: float, deferred_to: float | None = None
) -> CappedRun:
    return CappedRun(
        id=run.id,
        name=run.name,
        principal=run.principal,
        trigger=run.trigger,
        outcome=outcome,
        reason=reason,
        created_at=now,
        deferred_to=deferred_to,
        payload=run.payload,
    )
