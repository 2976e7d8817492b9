"""A routine's alerts on both databases, through rota's alerts system to the loopback alert
receiver (signatures checked): `caps: {alert: true}` on each run held back, and `notify:`
on a run's start and success, and on silence (no successful run for a while, whatever
triggers the routine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_receiver import Receiver

from rota import App, FakeClock
from rota.alerts import Alerts, webhook
from rota.routines import RunDropped
from rota.testing import say, scripted

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def make(database_url: str, clock: FakeClock, hook: Receiver, tmp_path: Path) -> Iterator[Any]:
    """make(extra front matter) -> an App whose routine `digest` has it, loaded, watched."""
    made: list[App] = []

    def build(extra: str) -> App:
        sink = webhook(hook.url, secret="ALERTS_SECRET", name="ops")
        app = App(database_url, clock=clock, alerts=Alerts(sinks=[sink], silence=False))
        made.append(app)
        app.principal("alice", kind="user")
        (tmp_path / "digest.md").write_text(
            f"---\nname: digest\nowner: alice\nmodel: scripted:echo\n{extra}---\nDo it.\n"
        )
        loaded = app.load_routines(tmp_path)
        assert loaded.problems == []
        app.check_alerts()  # the watchdog watches from now
        return app

    with scripted("echo", script=[say("done")]):
        yield build
    for app in made:
        app.close()


def kinds(hook: Receiver) -> list[tuple[str, str]]:
    return [(body["kind"], body["subject"]) for body in hook.verified()]


def test_caps_alert_on_each_run_held_back(make: Any, hook: Receiver) -> None:
    app = make("caps: {per_day: 1, over: drop, alert: true}\n")
    app.run_now("digest")
    with pytest.raises(RunDropped):
        app.run_now("digest")
    app.drain()  # runs the first, raises the alert, delivers it
    app.drain()  # a second pass raises nothing new
    [body] = hook.verified()
    assert (body["kind"], body["subject"]) == ("capped", "digest")
    assert body["text"] == "rota: a run of digest was dropped by its caps: per_day 1 used up"
    [record] = app.store.capped_runs(["digest"])
    assert body["detail"]["run_id"] == record.id


def test_notify_start_and_success(make: Any, hook: Receiver) -> None:
    app = make("notify: {sinks: [ops], start: true, success: true}\n")
    handle = app.run_now("digest")
    app.drain()
    app.drain()
    assert sorted(kinds(hook)) == [("start", "digest"), ("success", "digest")]
    assert all(body["detail"]["run_id"] == handle.id for body in hook.verified())


def test_notify_without_start_or_success_sends_neither(make: Any, hook: Receiver) -> None:
    app = make("notify: {sinks: [ops]}\n")
    app.run_now("digest")
    app.drain()
    app.drain()
    assert hook.verified() == []


def test_notify_silence_after_no_successful_run_for_the_window(
    make: Any, hook: Receiver, clock: FakeClock
) -> None:
    app = make("triggers:\n  - event: ping\nnotify: {silence: 1h}\n")
    app.emit("ping")
    app.drain()
    clock.advance(1800)
    assert app.check_alerts() == []  # quiet for 30 minutes: within the window
    clock.advance(1800)
    assert len(app.check_alerts()) == 1  # an hour without a success
    clock.advance(1800)
    assert app.check_alerts() == []  # one alert per quiet stretch
    app.drain()
    [body] = hook.verified()
    assert (body["kind"], body["subject"]) == ("silence", "digest")
    assert body["text"].startswith("rota: digest has had no successful run for 1h00m")
    app.emit("ping")  # a success starts a new stretch
    app.drain()
    clock.advance(3600)
    assert len(app.check_alerts()) == 1
