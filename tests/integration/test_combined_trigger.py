"""combined(): a schedule baseline with event overrides, debounce and suppression."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rota import App, ConfigError, FakeClock, combined, cron, every, on_event
from rota.scheduler import Scheduler

START = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC)


def event_runs(app: App, name: str) -> list[Any]:
    return [r for r in app.runs(names=[name], limit=1000) if r.trigger == "event"]


def test_a_burst_of_events_becomes_one_run_after_quiet(sqlite_url: str) -> None:
    clock = FakeClock(START)
    app = App(sqlite_url, clock=clock)

    @app.job(trigger=combined(on_event("stock.changed"), debounce="30s", max_wait="2m"))
    def reprice(ctx, event):
        return event["sku"]

    for i in range(5):  # five events 10 s apart: one run, 30 s after the last
        app.emit("stock.changed", {"sku": f"A{i}"})
        clock.advance(10)
    (run,) = event_runs(app, "reprice")
    assert run.run_after == START.timestamp() + 40 + 30
    assert run.payload == {"sku": "A4"}  # the latest event's payload
    for _ in range(12):  # an endless burst is still run within max_wait of its start
        app.emit("stock.changed", {"sku": "B"})
        clock.advance(10)
    (run,) = event_runs(app, "reprice")
    assert run.run_after == START.timestamp() + 120
    clock.set(run.run_after)
    app.drain()
    assert app.get_run(run.id).result == "B"
    app.emit("stock.changed", {"sku": "C"})  # after it ran, a new burst starts a new run
    assert len(event_runs(app, "reprice")) == 2
    app.close()


def test_scheduled_ticks_are_suppressed_after_an_event_run(database_url: str) -> None:
    clock = FakeClock(START)
    app = App(database_url, clock=clock)

    @app.job(
        trigger=combined(cron("*/5 * * * *"), on_event("stock.changed"), suppress_after_event="7m"),
        overlap="allow",
    )
    def reconcile(ctx):
        return None

    scheduler = Scheduler(app)
    scheduler.sync()
    app.emit("stock.changed", {"sku": "A"})  # 12:00:30
    for _ in range(4):  # 12:05 falls in the window (to 12:07:30); 12:10, :15 and :20 run
        clock.advance(5 * 60)
        scheduler.tick()
    scheduled = [r for r in app.runs(names=["reconcile"]) if r.trigger == "schedule"]
    assert sorted(datetime.fromtimestamp(r.run_after, UTC).minute for r in scheduled) == [
        10,
        15,
        20,
    ]
    (skip,) = app.store.ticks("reconcile", outcome="skipped")
    assert (skip.reason, skip.ticks) == ("suppressed", 1)
    assert datetime.fromtimestamp(skip.fire_at, UTC).minute == 5
    app.close()


def test_combined_definition_errors() -> None:
    with pytest.raises(ConfigError, match="needs on_event"):
        combined(every("1m"))
    with pytest.raises(ConfigError, match="suppress_after_event skips scheduled ticks"):
        combined(on_event("x"), suppress_after_event="5m")
    with pytest.raises(ConfigError, match="max_wait bounds a debounce"):
        combined(every("1m"), on_event("x"), max_wait="5m")
    assert "debounce 30s" in combined(every("1m"), on_event("x"), debounce="30s").describe()
