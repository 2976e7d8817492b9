"""pgqueuer peer (https://pgqueuer.readthedocs.io).

Enqueue: ``Queries.enqueue`` with lists (its batch form), in chunks.
Drain:   ``QueueManager.run(mode=drain, batch_size=B, max_concurrent_tasks=N)``
on its own asyncpg connection, as the performance-tuning guide recommends
(dedicated connection for the QueueManager; larger ``batch_size`` for short
jobs; ``max_concurrent_tasks`` must be >= 2 * batch_size, so B = N // 2).
In drain mode the manager exits by itself once the queue is empty and its
tasks are done, so drain time is the manager's run time.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode

from .common import Counter, analyze, rate, remaining, reset_database

ENQUEUE_CHUNK = 1000


async def _queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict:
    reset_database(dsn)
    counter = Counter()
    batch_size = max(1, concurrency // 2)

    producer = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(producer))
        await queries.install()

        t0 = time.perf_counter()
        for start in range(0, jobs, ENQUEUE_CHUNK):
            remaining()
            ids = range(start, min(start + ENQUEUE_CHUNK, jobs))
            await queries.enqueue(
                ["noop"] * len(ids), [str(i).encode() for i in ids], [0] * len(ids)
            )
        enqueue_s = time.perf_counter() - t0
        analyzed = analyze(dsn)

        worker_conn = await asyncpg.connect(dsn)
        try:
            qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

            @qm.entrypoint("noop")
            async def noop(job: Job) -> None:
                counter.hit(int(job.payload))

            t0 = time.perf_counter()
            await asyncio.wait_for(
                qm.run(
                    batch_size=batch_size,
                    mode=QueueExecutionMode.drain,
                    max_concurrent_tasks=concurrency,
                ),
                timeout=remaining(),
            )
            drain_s = time.perf_counter() - t0
        finally:
            await worker_conn.close()

        left = await producer.fetchval("SELECT count(*) FROM pgqueuer")
    finally:
        await producer.close()

    counter.check(jobs)
    if left:
        raise RuntimeError(f"{left} jobs left in the pgqueuer table after drain")
    return {
        "tool": "pgqueuer",
        "db": "postgresql",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_per_s": rate(jobs, enqueue_s),
        "drain_per_s": rate(jobs, drain_s),
        "ran": counter.calls,
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "notes": (
            f"enqueue: Queries.enqueue(list...) in chunks of {ENQUEUE_CHUNK}; "
            f"worker: QueueManager.run(mode=drain, batch_size={batch_size}, "
            f"max_concurrent_tasks={concurrency}) on a dedicated asyncpg connection, "
            "async entrypoint, durability=durable (default); "
            f"ANALYZE before drain: {analyzed}"
        ),
    }


def queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict:
    return asyncio.run(_queue_throughput(dsn, jobs, concurrency))


def step_overhead(dsn: str, workflows: int, steps: int) -> None:
    """pgqueuer has no durable workflows with checkpointed steps."""
    return None
