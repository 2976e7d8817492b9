"""Extension points: a new trigger kind is a class implementing the Trigger interface, and
nothing else. The two kinds below live in this file only; the scheduler and the event router
use them without any edit to rota's source."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rota import App, FakeClock, on_event
from rota.model import Event
from rota.scheduler import Scheduler
from rota.scheduling.triggers import Trigger

ANCHOR = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class EverySecondsFrom(Trigger):
    """Fires at anchor, anchor + n s, anchor + 2n s, ... (a time trigger)."""

    n: int
    anchor: datetime
    kind = "every-seconds"

    def describe(self) -> str:
        return f"every {self.n}s from {self.anchor.isoformat()}"

    def key(self) -> str:
        return f"every-seconds:{self.n}@{self.anchor.isoformat()}"

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        fires, fire = [], self._first_at_or_after(start)
        while fire < end:
            fires.append(fire)
            fire += timedelta(seconds=self.n)
        return fires

    def next_fire(self, after: datetime) -> datetime | None:
        return self._first_at_or_after(after + timedelta(microseconds=1))

    def _first_at_or_after(self, t: datetime) -> datetime:
        if t <= self.anchor:
            return self.anchor
        steps = -(-(t - self.anchor) // timedelta(seconds=self.n))  # ceiling
        return self.anchor + steps * timedelta(seconds=self.n)


@dataclass(frozen=True)
class NamePrefix(Trigger):
    """Fires on every emitted event whose name starts with `prefix` (an event trigger)."""

    prefix: str
    kind = "prefix"

    def describe(self) -> str:
        return f"events {self.prefix}*"

    def matches_event(self, event: Event) -> bool:
        return event.source == "app" and event.name.startswith(self.prefix)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(ANCHOR - timedelta(seconds=1))


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Iterator[App]:
    made = App(f"sqlite:///{tmp_path / 'rota.db'}", clock=clock)
    yield made
    made.close()


def test_the_scheduler_runs_a_custom_time_trigger(app: App, clock: FakeClock) -> None:
    seen: list[float] = []

    @app.job(trigger=EverySecondsFrom(10, ANCHOR), overlap="allow", misfire_grace="1h")
    def pulse(ctx: Any) -> None:
        seen.append(clock.now())

    scheduler = Scheduler(app, lookahead_s=0)
    assert scheduler.sync() == ["pulse"]
    assert scheduler.specs["pulse"].trigger == EverySecondsFrom(10, ANCHOR)
    for _ in range(4):
        clock.advance(10)  # ANCHOR + 9s, + 19s, + 29s, + 39s
        scheduler.tick()
    stats = app.drain()

    assert stats.succeeded == 4 and len(seen) == 4
    runs = app.runs(names=["pulse"], limit=100)
    fires = sorted(r.run_after for r in runs)
    assert fires == [(ANCHOR + timedelta(seconds=s)).timestamp() for s in (0, 10, 20, 30)]
    assert {r.trigger for r in runs} == {"schedule"}


def test_the_event_router_runs_a_custom_event_trigger(app: App) -> None:
    @app.job(trigger=NamePrefix("orders."))
    def on_orders(ctx: Any, payload: Any) -> Any:
        return payload

    @app.job(trigger=on_event("orders.created"))
    def created_only(ctx: Any, payload: Any) -> Any:
        return payload

    created = app.emit("orders.created", {"id": 1})
    shipped = app.emit("orders.shipped", {"id": 2})
    other = app.emit("billing.paid", {"id": 3})
    app.drain()

    assert len(created.runs) == 2
    assert [h.get().name for h in shipped.runs] == ["on_orders"]
    assert other.runs == []
    results = sorted(r.result["id"] for r in app.runs(names=["on_orders"], limit=10))
    assert results == [1, 2]
    assert app.webhooks() == {} and app.notify_channels() == []
