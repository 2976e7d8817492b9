"""Run caps on both databases, beyond the enqueue paths of test_routines.py: runs the
scheduler makes pass the same admission policy inside its tick transaction (a capped tick
is recorded twice: a capped record and a tick with reason "capped", and never fires
twice), and caps hold when several processes enqueue at the same instant."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from routine_kit import START, write

from rota import App, every
from rota.clock import FakeClock
from rota.routines import Caps, RunDropped
from rota.scheduler import Scheduler
from rota.storage.sql import SqlStore


def routine(name: str, extra: str) -> str:
    return f"---\nname: {name}\nowner: alice\nmodel: scripted:echo\n{extra}---\nDo the thing.\n"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[App]:
    a = App(database_url, clock=clock)
    a.principal("alice", kind="user", scopes=["mail:read"])
    yield a
    a.close()


def test_a_capped_routines_scheduled_ticks_are_dropped_and_recorded_twice(
    app: App, tmp_path: Path, clock: FakeClock, echo: Any
) -> None:
    extra = "triggers:\n  - every: 10m\ncaps: {per_hour: 2, over: drop}\n"
    write(tmp_path, "digest", routine("digest", extra))
    app.load_routines(tmp_path)
    scheduler = Scheduler(app)
    scheduler.sync()
    for _ in range(6):  # 00:10 .. 01:00, one pass at each fire time
        clock.advance(600)
        scheduler.tick()
        app.drain()  # finished, so that overlap="skip" does not hide the next tick
    runs = app.runs(names=["digest"])
    assert sorted(r.run_after - START for r in runs) == [600, 1200, 3600]
    ticks = {(t.fire_at - START, t.outcome, t.reason) for t in app.store.ticks("digest")}
    assert ticks == {
        (0, "skipped", "misfire"),  # due at sync, decided 10 minutes late
        (600, "enqueued", None),
        (1200, "enqueued", None),
        (1800, "skipped", "capped"),
        (2400, "skipped", "capped"),
        (3000, "skipped", "capped"),
        (3600, "enqueued", None),
    }
    records = app.store.capped_runs(["digest"])
    assert [(r.outcome, r.reason, r.trigger) for r in records] == [
        ("dropped", "per_hour 2 used up", "schedule")
    ] * 3
    assert not {r.id for r in records} & {r.id for r in runs}  # never queued
    # Another scheduler (or a pass repeated) decides nothing again: nothing fires twice.
    Scheduler(app).tick()
    assert len(app.runs(names=["digest"])) == 3
    assert len(app.store.capped_runs(["digest"])) == 3


def test_a_deferred_scheduled_tick_is_enqueued_once_due_in_the_next_window(
    app: App, clock: FakeClock
) -> None:
    # Caps are the app's admission policy, not a routine-only branch: a Python job's too.
    @app.job(schedule=every("20m"), overlap="allow")
    def report(ctx: Any) -> str:
        return "ok"

    app.routines.caps.set(Caps(name="report", principal=None, per_hour=1, over="defer"))
    scheduler = Scheduler(app)
    scheduler.sync()
    for _ in range(3):  # fire times 00:20, 00:40, 01:00
        clock.advance(1200)
        scheduler.tick()
    runs = sorted(app.runs(names=["report"]), key=lambda r: r.run_after)
    assert [r.run_after - START for r in runs] == [1200, 3600, 7200]
    ticks = sorted(app.store.ticks("report", outcome="enqueued"), key=lambda t: t.fire_at)
    assert [(t.fire_at - START, t.outcome, t.reason) for t in ticks] == [
        (1200, "enqueued", None),
        (2400, "enqueued", "capped"),  # deferred: its run is due at 01:00
        (3600, "enqueued", "capped"),  # 01:00 is taken by it: due at 02:00
    ]
    assert [t.run_id for t in ticks] == [r.id for r in runs]
    records = app.store.capped_runs(["report"])
    assert [(r.outcome, r.deferred_to) for r in records] == [
        ("deferred", START + 7200),
        ("deferred", START + 3600),
    ]
    scheduler.tick()
    assert len(app.runs(names=["report"])) == 3


def test_concurrent_enqueues_cannot_both_take_the_last_place(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: Any
) -> None:
    """Eight processes (each its own App and connection) fire a routine with three places
    left at the same instant; counting is made slow, so that without the caps' lock every
    one of them would count the same free places. Exactly three get in."""
    write(tmp_path, "digest", routine("digest", "caps: {per_day: 3}\n"))
    counted = SqlStore.count_runs_due

    def slow_count(self: SqlStore, *args: Any, **kwargs: Any) -> int:
        found = counted(self, *args, **kwargs)
        time.sleep(0.05)  # widen the gap between counting and inserting
        return found

    monkeypatch.setattr(SqlStore, "count_runs_due", slow_count)
    apps = []
    for _ in range(8):
        a = App(database_url, clock=FakeClock(START))
        a.principal("alice", kind="user", scopes=["mail:read"])
        a.load_routines(tmp_path)
        apps.append(a)
    barrier = threading.Barrier(len(apps))
    outcomes: list[str] = []

    def fire(a: App) -> None:
        barrier.wait()
        try:
            a.run_now("digest")
            outcomes.append("queued")
        except RunDropped:
            outcomes.append("dropped")

    threads = [threading.Thread(target=fire, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(outcomes) == ["dropped"] * 5 + ["queued"] * 3
        assert len(apps[0].runs(names=["digest"])) == 3
        records = apps[0].store.capped_runs(["digest"])
        assert [r.reason for r in records] == ["per_day 3 used up"] * 5
    finally:
        for a in apps:
            a.close()
