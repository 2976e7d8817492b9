"""The scheduler on both databases, driven by a fake clock: exactly one run per tick, the
misfire and overlap policies after an outage, pause, redefinition and backfill."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rota import App, FakeClock, RunState, cron, every
from rota.errors import ConfigError
from rota.scheduler import Scheduler

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def make_app(url: str, clock: FakeClock, **job_options: object) -> App:
    app = App(url, clock=clock)

    @app.job(schedule=every("1m"), **job_options)
    def minutely(ctx):
        return None

    return app


@pytest.fixture
def apps(database_url: str) -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.close()


def scheduled_runs(app: App, name: str) -> list:
    return [r for r in app.runs(names=[name], limit=100_000) if r.trigger == "schedule"]


def test_six_simulated_hours_give_exactly_one_run_per_tick_with_three_schedulers(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    def build() -> App:
        app = App(database_url, clock=clock)

        @app.job(schedule=every("1s"), overlap="allow", misfire_grace="1h")
        def each_second(ctx):
            return None

        @app.job(schedule=cron("* * * * *"), overlap="allow", misfire_grace="1h")
        def each_minute(ctx):
            return None

        apps.append(app)
        return app

    schedulers = [Scheduler(build(), lookahead_s=0.5) for _ in range(3)]
    for s in schedulers:
        s.sync()
    rng = random.Random(7)
    end = START + timedelta(hours=6)  # 21,600 second ticks and 360 minute ticks
    while clock.now() < end.timestamp():
        clock.advance(rng.choice([0.4, 1, 3, 17, 59, 60, 61, 300]))
        threads = [threading.Thread(target=s.tick) for s in schedulers]
        rng.shuffle(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    last = datetime.fromtimestamp(clock.now() + 0.5, UTC)  # decided up to the lookahead
    seconds = scheduled_runs(apps[0], "each_second")
    minutes = scheduled_runs(apps[0], "each_minute")
    expected_seconds = every("1s").fire_times(START, last + timedelta(microseconds=1))
    expected_minutes = cron("* * * * *").fire_times(START, last + timedelta(microseconds=1))
    assert sorted(r.run_after for r in seconds) == [f.timestamp() for f in expected_seconds]
    assert sorted(r.run_after for r in minutes) == [f.timestamp() for f in expected_minutes]
    assert len(expected_seconds) >= 21_600 and len(expected_minutes) >= 360
    deciders = Counter(t.decided_by for t in apps[0].store.ticks(limit=200_000))
    assert len(deciders) >= 2  # the work really was shared between schedulers


@pytest.mark.parametrize(
    ("policy", "expected_runs", "skipped"),
    [("skip", 0, 11), ("run_once", 1, 10), ("catch_up", 3, 8)],
)
def test_misfire_policies_after_an_outage(
    database_url: str,
    clock: FakeClock,
    apps: list[App],
    policy: str,
    expected_runs: int,
    skipped: int,
) -> None:
    app = make_app(
        database_url, clock, misfire=policy, max_catch_up=3, misfire_grace="30s", overlap="allow"
    )
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    scheduler.tick()
    assert len(scheduled_runs(app, "minutely")) == 1  # the 12:00 tick
    clock.advance(11 * 60 + 45)  # down from 12:00:00 to 12:11:45: ticks 12:01 ... 12:11 missed
    scheduler.tick()
    runs = scheduled_runs(app, "minutely")
    assert len(runs) == 1 + expected_runs
    if policy == "run_once":
        assert max(r.run_after for r in runs) == (START + timedelta(minutes=11)).timestamp()
    if policy == "catch_up":
        fire = sorted(r.run_after for r in runs)[1:]
        assert fire == [(START + timedelta(minutes=m)).timestamp() for m in (9, 10, 11)]
    skips = app.store.ticks("minutely", outcome="skipped")
    assert sum(t.ticks for t in skips) == skipped
    assert {t.reason for t in skips} == ({"misfire"} if skipped else set())


def test_late_but_within_grace_still_runs_every_tick(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    app = make_app(database_url, clock, misfire="skip", misfire_grace="5m", overlap="allow")
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    clock.advance(3 * 60)
    scheduler.tick()
    assert len(scheduled_runs(app, "minutely")) == 4  # 12:00, 12:01, 12:02, 12:03


@pytest.mark.parametrize(
    ("policy", "new_runs", "cancelled"),
    [("allow", 1, 0), ("skip", 0, 0), ("queue_one", 0, 0), ("cancel_previous", 1, 1)],
)
def test_overlap_policies(
    database_url: str,
    clock: FakeClock,
    apps: list[App],
    policy: str,
    new_runs: int,
    cancelled: int,
) -> None:
    app = make_app(database_url, clock, overlap=policy)
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    scheduler.tick()
    (first,) = scheduled_runs(app, "minutely")  # still ENQUEUED: no worker runs here
    clock.advance(60)
    scheduler.tick()
    runs = scheduled_runs(app, "minutely")
    assert len(runs) == 1 + new_runs
    assert (app.get_run(first.id).state == RunState.CANCELLED) == bool(cancelled)
    skipped = app.store.ticks("minutely", outcome="skipped")
    assert [t.reason for t in skipped] == ([] if new_runs else ["overlap"])


def test_queue_one_lets_one_run_wait_behind_a_running_one(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    app = make_app(database_url, clock, overlap="queue_one")
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    scheduler.tick()
    app.store.claim("w", ["minutely"], 1, clock.now(), 600)  # the 12:00 run is now RUNNING
    clock.advance(60)
    scheduler.tick()  # 12:01 may wait behind it
    clock.advance(60)
    scheduler.tick()  # 12:02 would be a second waiting run: skipped
    states = Counter(r.state for r in scheduled_runs(app, "minutely"))
    assert states == {RunState.RUNNING: 1, RunState.ENQUEUED: 1}
    assert [t.reason for t in app.store.ticks("minutely", outcome="skipped")] == ["overlap"]


def test_pause_records_skips_and_resume_fires_no_backlog(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    app = make_app(database_url, clock, overlap="allow")
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    scheduler.tick()
    assert app.store.set_paused("minutely", True, clock.now())
    for _ in range(10):
        clock.advance(60)
        scheduler.tick()
    assert len(scheduled_runs(app, "minutely")) == 1
    app.store.set_paused("minutely", False, clock.now())
    scheduler.tick()
    clock.advance(60)
    scheduler.tick()
    assert len(scheduled_runs(app, "minutely")) == 2  # only 12:11 after resuming
    skipped = app.store.ticks("minutely", outcome="skipped")
    assert {t.reason for t in skipped} == {"paused"}
    assert sum(t.ticks for t in skipped) == 10


def test_redefining_a_schedule_fires_no_surprise_runs(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    first = make_app(database_url, clock, overlap="allow")
    apps.append(first)
    Scheduler(first).sync()
    Scheduler(first).tick()
    clock.advance(3645)  # an hour with no scheduler; then a deploy changes the schedule
    second = App(database_url, clock=clock)
    apps.append(second)

    @second.job(name="minutely", schedule=cron("*/30 * * * *"), overlap="allow")
    def minutely(ctx):
        return None

    scheduler = Scheduler(second)
    assert scheduler.sync() == ["minutely"]
    scheduler.tick()
    assert len(scheduled_runs(second, "minutely")) == 1  # nothing for the hour it was away
    clock.advance(30 * 60)
    scheduler.tick()
    assert len(scheduled_runs(second, "minutely")) == 2


def test_backfill_enqueues_each_missing_tick_once(
    database_url: str, clock: FakeClock, apps: list[App]
) -> None:
    app = make_app(database_url, clock, overlap="allow")
    apps.append(app)
    scheduler = Scheduler(app)
    scheduler.sync()
    start = START - timedelta(hours=1)
    seen: list[tuple[int, int]] = []
    created = scheduler.backfill(
        "minutely", start, START, progress=lambda d, t: seen.append((d, t)), chunk=25
    )
    assert created == 60 and seen[-1] == (60, 60)
    assert scheduler.backfill("minutely", start, START + timedelta(minutes=1)) == 1
    with pytest.raises(ConfigError, match="no schedule named 'nope'; known: minutely"):
        scheduler.backfill("nope", start, START)
