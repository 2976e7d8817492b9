"""Compute time in cost reports is the time run bodies executed, on both databases: not the
time a claimed run waited in its worker's prefetch buffer, nor a retry's backoff, nor a
parked wait. The fake clock moves only inside the bodies, so each body's own time is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rota import App, FakeClock, RunState
from rota.cost.history import load_history

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def timed_app(database_url: str, clock: FakeClock) -> Iterator[App]:
    app = App(database_url, clock=clock)
    yield app
    app.close()


def _compute(app: App) -> dict[str, Decimal]:
    history = load_history(app.store, T0, T0 + DAY)
    return {r.run_id: r.compute_seconds for r in history.records}


def test_runs_that_waited_in_the_prefetch_buffer_report_only_their_body_time(
    timed_app: App, clock: FakeClock
) -> None:
    @timed_app.job
    def crunch(ctx: Any, seconds: int) -> int:
        clock.advance(seconds)
        return seconds

    handles = [timed_app.run_now("crunch", s) for s in (3, 5, 7)]
    # One slot and two prefetched runs: all three are claimed at T0, and the second and
    # third wait behind the first (3 s) and the second (5 s) before their bodies start.
    timed_app.drain(lease_s=10_000, concurrency=1, prefetch=2)

    runs = [h.get() for h in handles]
    assert [r.state for r in runs] == [RunState.SUCCEEDED] * 3
    assert {r.started_at for r in runs} == {T0.timestamp()}  # the queue wait is real
    assert _compute(timed_app) == {
        handles[0].id: Decimal(3),
        handles[1].id: Decimal(5),
        handles[2].id: Decimal(7),
    }


def test_a_retried_job_counts_the_body_of_every_attempt(timed_app: App, clock: FakeClock) -> None:
    @timed_app.job(retries=1, retry_backoff=0)
    def flaky(ctx: Any) -> str:
        clock.advance(2 if ctx.attempt == 1 else 3)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    handle = timed_app.run_now("flaky")
    timed_app.drain(lease_s=10_000, concurrency=1, prefetch=0)

    assert (handle.get().state, handle.get().failures) == (RunState.SUCCEEDED, 1)
    assert _compute(timed_app) == {handle.id: Decimal(5)}  # 2 s failed + 3 s succeeded


def test_a_parked_workflow_counts_both_executions_but_not_its_wait_or_queue_time(
    timed_app: App, clock: FakeClock
) -> None:
    @timed_app.workflow
    async def nap(ctx: Any) -> str:
        clock.advance(2)  # replayed executions move the clock too: only the first may
        if not await ctx.step("first", lambda: True):
            return "unreachable"
        await ctx.sleep("1h")
        clock.advance(4)
        return "rested"

    @timed_app.job
    def blocker(ctx: Any) -> None:
        clock.advance(10)

    # The replay of the first part advances the clock again: the body really runs twice.
    handle = timed_app.run_now("nap")
    timed_app.drain(lease_s=10_000, concurrency=1, prefetch=2)
    assert handle.get().state == RunState.WAITING

    clock.advance(3600)
    # The woken run waits in the prefetch buffer behind a higher-priority 10 s job.
    other = timed_app.run_now("blocker", priority=10)
    timed_app.drain(lease_s=10_000, concurrency=1, prefetch=2)

    assert handle.result() == "rested"
    # First execution: 2 s up to the park; second: 2 s replay + 4 s. Not the hour parked,
    # nor the 10 s the resumed run waited behind the blocker.
    assert _compute(timed_app) == {handle.id: Decimal(8), other.id: Decimal(10)}


def test_an_execution_written_twice_is_counted_once(timed_app: App, clock: FakeClock) -> None:
    """A flush retried after a lost commit acknowledgement writes its executions again."""
    from rota.model import Execution

    @timed_app.job
    def work(ctx: Any) -> None:
        clock.advance(4)

    handle = timed_app.run_now("work")
    timed_app.drain(lease_s=10_000)
    run = handle.get()
    again = Execution(run.id, run.lease_token, 4.0)
    timed_app.store.complete([], [again])
    timed_app.store.complete([], [again])

    assert _compute(timed_app) == {handle.id: Decimal(4)}


def test_a_run_recorded_before_bodies_were_timed_keeps_the_wall_time_estimate(
    timed_app: App, clock: FakeClock
) -> None:
    @timed_app.job
    def old(ctx: Any) -> None:
        clock.advance(6)

    handle = timed_app.run_now("old")
    timed_app.drain(lease_s=10_000)
    # As a run finished by an older rota looks: no measured body time.
    timed_app.store.conn().execute(
        "UPDATE rota_runs SET compute_s = NULL, compute_token = NULL WHERE id = :id",
        {"id": handle.id},
    )
    run = handle.get()
    assert run.finished_at is not None and run.started_at is not None
    assert _compute(timed_app) == {handle.id: Decimal(str(run.finished_at - run.started_at))}
