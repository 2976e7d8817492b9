"""A burst of runs leased ahead begins before the worker writes outcomes (issue 18): the
completion flush's CPU on a database thread would otherwise compete with the burst's last
starts. Nothing is lost or reordered by the wait: every outcome and run start is written."""

from __future__ import annotations

import asyncio
from typing import Any

from rota import App
from rota.identity.audit import verify_chain
from rota.storage.audit import RUN_STARTED
from rota.worker import Worker


def test_outcomes_of_a_burst_are_written_once_all_of_it_has_begun(app: App) -> None:
    @app.job
    async def tick(ctx: Any) -> None:
        await asyncio.sleep(0.01)  # holds its slot: the rest of the burst waits for one

    app.run_many("tick", [None] * 12, delay=0.4)
    # Two slots for 12 runs, and a lookahead long enough that the flush's wait for the
    # burst never runs out: each flush must find every run of the burst begun.
    worker: Worker = app.worker(concurrency=2, prefetch=0, lookahead_s=30.0)
    waiting_at_flush: list[int] = []  # runs of the burst not begun when a flush set off
    db = worker.db

    async def recording(fn: Any, *args: Any) -> Any:
        if fn == worker._write_outcomes:  # on the loop, as the flush hands its write over
            waiting_at_flush.append(worker._in_burst)
        return await db(fn, *args)

    worker.db = recording  # type: ignore[method-assign]
    stats = asyncio.run(worker.run(until_idle=True))

    assert stats.succeeded == 12
    assert waiting_at_flush and set(waiting_at_flush) == {0}
    assert app.store.count_states(["tick"]) == {"SUCCEEDED": 12}
    starts = app.store.audit_records(action=RUN_STARTED, limit=100)
    assert len({r.run_id for r in starts}) == len(starts) == 12
    assert verify_chain(app.store).ok


def test_a_drain_never_waits_for_a_burst(app: App) -> None:
    @app.job
    async def now(ctx: Any) -> None:
        return None

    app.run_many("now", [None] * 50)
    worker: Worker = app.worker(concurrency=4)
    stats = asyncio.run(worker.run(until_idle=True))
    assert stats.succeeded == 50
    assert worker._in_burst == 0 and worker._burst_begun.is_set()
