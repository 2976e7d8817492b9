"""rota itself, measured exactly like the peers (same job count, concurrency and checks).

Enqueue: ``App.run_many`` in chunks of 1000 (one transaction each).
Drain:   one ``Worker`` process with ``concurrency`` slots, batched claims and completions.
Steps:   workflows of N no-op ``ctx.step`` calls versus workflows with none.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rota import App

from .common import Counter, analyze, rate, reset_database

ENQUEUE_CHUNK = 1000


def _url(dsn: str) -> str:
    return dsn


def queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict[str, Any]:
    reset_database(dsn)
    counter = Counter()
    app = App(_url(dsn))

    @app.job
    async def noop(ctx: Any, payload: dict[str, int]) -> None:
        counter.hit(payload["i"])

    app.store.migrate()
    t0 = time.perf_counter()
    for start in range(0, jobs, ENQUEUE_CHUNK):
        app.run_many("noop", ({"i": i} for i in range(start, min(start + ENQUEUE_CHUNK, jobs))))
    enqueue_s = time.perf_counter() - t0
    analyzed = analyze(dsn)

    t0 = time.perf_counter()
    stats = asyncio.run(app.worker(concurrency=concurrency).run(until_idle=True))
    drain_s = time.perf_counter() - t0
    counter.check(jobs)
    succeeded = app.store.count_states().get("SUCCEEDED", 0)
    if succeeded != jobs or stats.succeeded != jobs:
        raise RuntimeError(f"{succeeded} of {jobs} runs marked succeeded")
    app.close()
    return {
        "tool": "rota",
        "db": "sqlite" if dsn.startswith("sqlite") else "postgresql",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_per_s": rate(jobs, enqueue_s),
        "drain_per_s": rate(jobs, drain_s),
        "ran": counter.calls,
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "notes": f"enqueue: App.run_many chunks of {ENQUEUE_CHUNK}; worker concurrency="
        f"{concurrency}, async job; ANALYZE before drain: {analyzed}",
    }


def step_overhead(dsn: str, workflows: int, steps: int) -> dict[str, Any]:
    reset_database(dsn)
    app = App(_url(dsn))

    def noop_step() -> None:
        return None

    async def nothing() -> None:
        return None

    @app.workflow
    async def with_steps(ctx: Any, n: int) -> None:
        for _ in range(n):
            await ctx.step("s", nothing)

    app.store.migrate()

    async def timed(n: int) -> float:
        worker = app.worker(concurrency=1)
        runs = [
            app.definition("with_steps").new_run(n, now=app.clock.now(), trigger="bench")
            for _ in range(workflows)
        ]
        started = time.perf_counter()
        # Execute the workflows in this process, one after another, as DBOS's bench does.
        worker_task = asyncio.create_task(worker.run(until_idle=True))
        await asyncio.to_thread(app.store.enqueue, runs)
        await worker_task
        return time.perf_counter() - started

    async def both() -> tuple[float, float]:
        return await timed(0), await timed(steps)

    t_zero, t_steps = asyncio.run(both())
    app.close()
    return {
        "tool": "rota",
        "db": "sqlite" if dsn.startswith("sqlite") else "postgresql",
        "us_per_step": round((t_steps - t_zero) / (workflows * steps) * 1e6, 1),
        "workflows": workflows,
        "steps": steps,
        "notes": "async no-op steps; each checkpoint is one INSERT committed before the "
        "workflow continues",
    }
