"""DBOS peer (https://docs.dbos.dev/python), durable workflows on a system DB.

Queue bench: each job is a no-op ``@DBOS.workflow()`` enqueued with
``DBOS.enqueue_workflow`` (DBOS has no bulk-enqueue API; one call per job).
The queue is registered with ``DBOS.register_queue(worker_concurrency=0)``
so nothing runs while enqueueing, then opened with
``Queue.set_worker_concurrency(N)``; the drain ends when the system database
shows every workflow SUCCESS. The DBOS worker never exits by itself, so it is
destroyed afterwards.

Steps bench: sequential direct calls of a workflow with ``steps`` no-op
``@DBOS.step()`` calls vs. one with none; the difference is the per-step
checkpoint cost. The dsn may be PostgreSQL or ``sqlite:///path`` (DBOS
supports SQLite as its system database).
"""

from __future__ import annotations

import os
import time

from dbos import DBOS, DBOSConfig

from .common import Counter, analyze, is_sqlite, rate, remaining, reset_database, wait_until

QUEUE = "bench"
# DBOS dequeues at most worker_concurrency workflows per poll of the queue.
# Its default poll interval (1.0 s) caps the drain at about N jobs/s, and the
# docs give no throughput guidance, so we poll every 0.01 s (override with
# ROTA_BENCH_DBOS_POLL_S). Measured here, 2000 jobs, N=32: 1.0 s -> ~30/s,
# 0.05 s -> ~380/s, 0.01 s -> ~650/s, 0.001 s -> ~850/s.
POLLING_INTERVAL_S = float(os.environ.get("ROTA_BENCH_DBOS_POLL_S", "0.01"))

_jobs = Counter()
_steps = Counter()


@DBOS.workflow()
def noop_job(i: int) -> None:
    _jobs.hit(i)


@DBOS.step()
def noop_step() -> None:
    _steps.calls += 1  # only ever called from one thread here


@DBOS.workflow()
def steps_workflow(n: int) -> None:
    for _ in range(n):
        noop_step()


def _launch(dsn: str) -> None:
    reset_database(dsn)
    config: DBOSConfig = {
        "name": "rota-bench",
        "system_database_url": dsn,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()


def _count_unfinished(dsn: str) -> int:
    """Workflows of the bench queue not yet SUCCESS, read from the system DB."""
    sql = "SELECT count(*) FROM {t} WHERE queue_name = 'bench' AND status <> 'SUCCESS'"
    if is_sqlite(dsn):
        import sqlite3

        with sqlite3.connect(dsn.split(":///", 1)[1]) as conn:
            return conn.execute(sql.format(t="workflow_status")).fetchone()[0]
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.format(t="dbos.workflow_status")).fetchone()[0]


def queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict:
    _launch(dsn)
    try:
        queue = DBOS.register_queue(
            QUEUE, worker_concurrency=0, polling_interval_sec=POLLING_INTERVAL_S
        )
        t0 = time.perf_counter()
        for i in range(jobs):
            if i % 1000 == 0:
                remaining()
            DBOS.enqueue_workflow(QUEUE, noop_job, i)
        enqueue_s = time.perf_counter() - t0
        analyzed = analyze(dsn)

        t0 = time.perf_counter()
        queue.set_worker_concurrency(concurrency)
        wait_until(lambda: _jobs.calls >= jobs)
        done = wait_until(lambda: _count_unfinished(dsn) == 0, interval=0.01)
        drain_s = done - t0
    finally:
        DBOS.destroy()

    _jobs.check(jobs)
    return {
        "tool": "dbos",
        "db": "sqlite" if is_sqlite(dsn) else "postgresql",
        "jobs": jobs,
        "concurrency": concurrency,
        "enqueue_per_s": rate(jobs, enqueue_s),
        "drain_per_s": rate(jobs, drain_s),
        "ran": _jobs.calls,
        "enqueue_s": round(enqueue_s, 3),
        "drain_s": round(drain_s, 3),
        "notes": (
            "enqueue: DBOS.enqueue_workflow, one call per job (no bulk API); "
            f"worker: DBOS.register_queue(worker_concurrency={concurrency}, "
            f"polling_interval_sec={POLLING_INTERVAL_S}), sync workflow on DBOS's "
            "thread pool, default sys_db_pool_size; drain ends when all workflows "
            f"are SUCCESS in the system DB; ANALYZE before drain: {analyzed}"
        ),
    }


def step_overhead(dsn: str, workflows: int, steps: int) -> dict:
    _launch(dsn)
    try:
        for _ in range(max(10, workflows // 10)):  # warm-up, untimed
            steps_workflow(0)
            steps_workflow(steps)
        _steps.calls = 0
        t_zero = t_steps = 0.0
        # Interleave the two kinds so drift (table growth, caches) hits both alike.
        for _ in range(workflows):
            remaining()
            t0 = time.perf_counter()
            steps_workflow(0)
            t1 = time.perf_counter()
            steps_workflow(steps)
            t2 = time.perf_counter()
            t_zero += t1 - t0
            t_steps += t2 - t1
    finally:
        DBOS.destroy()

    if _steps.calls != workflows * steps:
        raise RuntimeError(f"expected {workflows * steps} steps, ran {_steps.calls}")
    return {
        "tool": "dbos",
        "db": "sqlite" if is_sqlite(dsn) else "postgresql",
        "workflows": workflows,
        "steps": steps,
        "us_per_step": round((t_steps - t_zero) / (workflows * steps) * 1e6, 1),
        "us_per_workflow_0_steps": round(t_zero / workflows * 1e6, 1),
        "ran_steps": _steps.calls,
        "notes": (
            "@DBOS.workflow() called directly (synchronously) with n no-op "
            "@DBOS.step() calls; workflows with 0 and with n steps interleaved; "
            "us_per_step = (t_steps - t_zero) / (workflows * steps)"
        ),
    }
