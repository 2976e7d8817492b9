"""procrastinate peer (https://procrastinate.readthedocs.io).

Enqueue: ``Task.batch_defer_async`` (the documented bulk API), in chunks.
Drain:   ``App.run_worker_async(concurrency=N, wait=False)``; with
``wait=False`` the worker exits by itself once the queue is empty and its
running jobs are done, so drain time is the worker's run time.
"""

from __future__ import annotations

import asyncio
import time

from procrastinate import App, PsycopgConnector

from .common import Counter, analyze, rate, remaining, reset_database

ENQUEUE_CHUNK = 1000


async def _queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict:
    reset_database(dsn)
    counter = Counter()
    # Default pool (psycopg_pool: 4 connections). The worker fetches jobs one
    # at a time; a pool of concurrency+2 measured the same here (within noise).
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        counter.hit(i)

    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        t0 = time.perf_counter()
        for start in range(0, jobs, ENQUEUE_CHUNK):
            remaining()
            stop = min(start + ENQUEUE_CHUNK, jobs)
            await noop.batch_defer_async(*({"i": i} for i in range(start, stop)))
        enqueue_s = time.perf_counter() - t0
        analyzed = analyze(dsn)

        t0 = time.perf_counter()
        await asyncio.wait_for(
            app.run_worker_async(
                queues=["bench"],
                concurrency=concurrency,
                wait=False,
                install_signal_handlers=False,
            ),
            timeout=remaining(),
        )
        drain_s = time.perf_counter() - t0

        async with app.connector.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            )
            (succeeded,) = await cur.fetchone()

    counter.check(jobs)
    if succeeded != jobs:
        raise RuntimeError(f"{succeeded} of {jobs} jobs marked succeeded")
    return {
        "tool": "procrastinate",
        "db": "postgresql",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_per_s": rate(jobs, enqueue_s),
        "drain_per_s": rate(jobs, drain_s),
        "ran": counter.calls,
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "notes": (
            f"enqueue: Task.batch_defer_async in chunks of {ENQUEUE_CHUNK}; "
            f"worker: App.run_worker_async(concurrency={concurrency}, wait=False), "
            "async task, PsycopgConnector default pool, "
            "listen_notify on (default), delete_jobs=never (default); "
            f"ANALYZE before drain: {analyzed}"
        ),
    }


def queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict:
    return asyncio.run(_queue_throughput(dsn, jobs, concurrency))


def step_overhead(dsn: str, workflows: int, steps: int) -> None:
    """procrastinate has no durable workflows with checkpointed steps."""
    return None
