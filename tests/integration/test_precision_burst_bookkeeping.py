"""A burst of runs falling due together begins before any of its runs' bookkeeping
(issue 18, schedule precision): each run's outcome, metrics and middleware after-work wait
for the rest of the burst to begin, one loop turn. That wait comes after the body returned,
so it must not lose the outcome: an interruption arriving then does not make a finished run
run again, and its compute time stops at the body's end."""

from __future__ import annotations

import asyncio
from typing import Any

from rota import App
from rota.identity.audit import verify_chain
from rota.worker import RunCall, Worker
from rota.worker.middleware import Execute

BURST = 12


class Events:
    """What happened, in order: a body beginning ('body'), a run's after-work ('after')."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        value = await call_next(call)
        self.seen.append("after")
        return value


def burst_worker(app: App) -> Worker:
    """Fewer slots than the burst, and a lookahead long enough that the whole burst is
    leased ahead of its time and wakes together."""
    return app.worker(concurrency=4, prefetch=0, lookahead_s=30.0)


def run(worker: Worker) -> Any:
    # A guard against a run left RUNNING (its lease would expire only after minutes).
    return asyncio.run(asyncio.wait_for(worker.run(until_idle=True), 120))


def test_every_body_of_a_burst_begins_before_any_bookkeeping(app: App) -> None:
    events = Events()
    app.run_middleware.append(events)

    @app.job
    async def tick(ctx: Any) -> None:
        events.seen.append("body")

    app.run_many("tick", [None] * BURST, delay=0.4)
    stats = run(burst_worker(app))

    assert stats.succeeded == BURST
    assert events.seen == ["body"] * BURST + ["after"] * BURST
    assert app.store.count_states(["tick"]) == {"SUCCEEDED": BURST}
    assert verify_chain(app.store).ok


def test_an_interruption_after_the_body_returned_keeps_its_outcome(app: App) -> None:
    bodies: list[str] = []

    @app.job
    async def tick(ctx: Any) -> None:
        bodies.append(ctx.run.id)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # as a shutdown or a lost lease would, just as the body returns

    app.run_many("tick", [None] * BURST, delay=0.4)
    stats = run(burst_worker(app))

    assert stats.succeeded == BURST
    assert len(bodies) == len(set(bodies)) == BURST  # none ran twice
    assert app.store.count_states(["tick"]) == {"SUCCEEDED": BURST}


def test_compute_time_stops_at_the_end_of_the_body(app: App) -> None:
    ended: dict[str, float] = {}

    class BodyEnd:
        async def __call__(self, call: RunCall, call_next: Execute) -> Any:
            value = await call_next(call)
            assert call.body_started is not None and call.body_ended is not None
            ended[call.run.id] = call.body_ended - call.body_started
            return value

    app.run_middleware.append(BodyEnd())

    @app.job
    async def tick(ctx: Any) -> None:
        return None

    app.run_many("tick", [None] * BURST, delay=0.4)
    worker = burst_worker(app)
    timed: list[Any] = []
    db = worker.db

    async def recording(fn: Any, *args: Any) -> Any:
        if fn == worker._write_outcomes:
            timed.extend(args[1])
        return await db(fn, *args)

    worker.db = recording  # type: ignore[method-assign]
    run(worker)

    assert {e.run_id: e.seconds for e in timed} == ended
