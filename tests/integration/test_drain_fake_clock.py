"""app.drain() under a FakeClock runs in virtual time, on both databases: a run queued for
later (a delay, a retry's backoff) is reached by moving the clock to it, not by waiting for a
clock that nobody moves; parked runs stay parked unless drain(advance_waits=True)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_time import HOUR, START

from rota import App, FakeClock, RunState
from rota.errors import ConfigError

pytestmark = pytest.mark.timeout(30)  # a regression hangs: fail fast instead


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[App]:
    """An App on the fake `clock` (the shared `app` fixture runs on real time)."""
    a = App(database_url, clock=clock)
    yield a
    a.close()


def test_a_run_queued_an_hour_ahead_drains_and_the_clock_moves_by_an_hour(
    app: App, clock: FakeClock
) -> None:
    ran_at: list[float] = []

    @app.job
    def later(ctx: Any) -> str:
        ran_at.append(clock.now())
        return "done"

    handle = app.run_now("later", delay="1h")
    stats = app.drain()
    assert handle.get().state == RunState.SUCCEEDED
    assert stats.succeeded == 1
    assert ran_at == [START + HOUR]
    assert clock.now() == START + HOUR


def test_queued_runs_run_in_the_order_of_their_time(app: App, clock: FakeClock) -> None:
    ran: list[tuple[str, float]] = []

    @app.job
    def note(ctx: Any, label: str) -> None:
        ran.append((label, clock.now()))

    app.run_now("note", "now")
    app.run_now("note", "in 2h", delay="2h")
    app.run_now("note", "in 30m", delay="30m")
    app.drain()
    assert ran == [("now", START), ("in 30m", START + 1800), ("in 2h", START + 2 * HOUR)]
    assert clock.now() == START + 2 * HOUR


def test_a_job_that_fails_twice_is_retried_after_its_backoff_and_succeeds(
    app: App, clock: FakeClock
) -> None:
    attempts: list[float] = []

    @app.job(retries=3, retry_backoff="1m")
    def flaky(ctx: Any) -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise RuntimeError("upstream is down")
        return "ok"

    handle = app.run_now("flaky")
    stats = app.drain()
    run = handle.get()
    assert (run.state, run.result, run.failures) == (RunState.SUCCEEDED, "ok", 2)
    assert (stats.retried, stats.succeeded) == (2, 1)
    assert attempts[0] == START
    # Equal jitter: half of each exponential delay (60 s, then 120 s) is fixed.
    assert attempts[1] - attempts[0] >= 30 and attempts[2] - attempts[1] >= 60
    assert clock.now() == attempts[2]


def test_a_sleeping_workflow_stays_parked_by_default_and_completes_with_advance_waits(
    app: App, clock: FakeClock
) -> None:
    @app.workflow
    async def nap(ctx: Any) -> str:
        await ctx.sleep("1h")
        return "rested"

    handle = app.run_now("nap")
    assert app.drain().parked == 1  # docs/semantics.md: parked runs stay parked
    assert (handle.state, clock.now()) == ("WAITING", START)

    stats = app.drain(advance_waits=True)
    assert (handle.get().state, handle.get().result) == (RunState.SUCCEEDED, "rested")
    assert stats.succeeded == 1
    assert clock.now() == START + HOUR


def test_advance_waits_times_out_waits_with_a_deadline_but_not_one_without(
    app: App, clock: FakeClock
) -> None:
    @app.workflow
    async def invoice(ctx: Any, timeout: str | None) -> str:
        paid = await ctx.wait_for_event("invoice.paid", timeout=timeout)
        return "unpaid" if paid is None else "paid"

    @app.workflow
    async def refund(ctx: Any) -> str:
        decision = await ctx.approval("Refund?", approvers="finance", timeout="4h")
        return decision.status

    bounded = app.run_now("invoice", "1d")
    forever = app.run_now("invoice", None)
    asked = app.run_now("refund")
    app.drain(advance_waits=True)
    assert (bounded.get().state, bounded.get().result) == (RunState.SUCCEEDED, "unpaid")
    assert (asked.get().state, asked.get().result) == (RunState.SUCCEEDED, "timed_out")
    assert forever.state == "WAITING"  # no instant would end it: drain returns all the same
    assert clock.now() == START + 86400


def test_moving_the_clock_to_a_queued_run_times_out_the_waits_it_passes_first(
    app: App, clock: FakeClock
) -> None:
    seen: list[tuple[str, float]] = []

    @app.workflow
    async def invoice(ctx: Any) -> None:
        paid = await ctx.wait_for_event("invoice.paid", timeout="1h")
        seen.append(("invoice " + ("paid" if paid else "timed out"), clock.now()))

    @app.job
    def report(ctx: Any) -> None:
        seen.append(("report", clock.now()))

    app.run_now("invoice")
    app.run_now("report", delay="2h")
    app.drain()
    assert seen == [("invoice timed out", START + HOUR), ("report", START + 2 * HOUR)]


def test_advance_waits_needs_a_fake_clock(database_url: str) -> None:
    app = App(database_url)
    try:
        with pytest.raises(ConfigError, match=r"drain\(advance_waits=True\) needs a FakeClock"):
            app.drain(advance_waits=True)
    finally:
        app.close()
