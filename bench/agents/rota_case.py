"""rota's half of bench/agent_fanout.py: the agent as a job, drained by one worker process.

    python -m bench.agents.rota_case --dsn postgresql://.../rota_bench_agents \
        --base-url http://127.0.0.1:PORT --runs 1000 --rpm 3000 --concurrency 1000

This process is the worker: it resets the database, enqueues the runs with `run_many`
(untimed), then measures the drain with one `Worker(concurrency=...)`: wall time, its own
CPU (getrusage, every thread), its peak RSS over the resident size just before the worker
started, and how many runs executed at once (sampled). It also counts the rate limiter's
round trips to the store (`store.take`, or `store.take_many` for several calls: "batches"),
each call admitted at once or told to wait ("refused"), and samples how many database
connections are open. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import sys
import threading
import time
from collections import Counter
from typing import Any

import psycopg
from bench.peers.common import analyze, reset_database

from rota import Agent, App, tool
from rota.agents.models.ratelimited import RateLimit
from rota.cost import Price

from .common import INSTRUCTIONS, MODEL_NAME, cpu_s, emit, lookup_text, peak_rss_kib, rss_kib, task

AGENT = "order-agent"


class ConnectionCounter(threading.Thread):
    """Samples how many connections to the benchmark's database are open (pg_stat_activity,
    through one connection of its own, which is not counted)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                [(count,)] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                self.peak = max(self.peak, int(count))


def build(dsn: str, base_url: str, rpm: float, burst_s: float | None) -> App:
    app = App(dsn)

    @tool
    async def lookup(order: int, step: int) -> str:
        """Look an order up.

        Args:
            order: The order number.
            step: Which lookup this is (1 or 2).
        """
        return lookup_text(order, step)

    agent = Agent(
        name=AGENT,
        model=f"anthropic:{MODEL_NAME}",
        base_url=base_url,
        instructions=INSTRUCTIONS,
        tools=[lookup],
        max_steps=5,
        price=Price(input=3, output=15),  # a fake server's model has no list price
        rate_limit=RateLimit(requests_per_minute=rpm)
        if burst_s is None
        else RateLimit(requests_per_minute=rpm, burst_s=burst_s),
    )
    app.agent(agent)
    return app


async def drain(
    app: App, concurrency: int, timeout: float, db_threads: int | None = None
) -> dict[str, Any]:
    worker = app.worker(concurrency=concurrency, db_threads=db_threads)
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            # Runs holding an execution slot (the worker's own bookkeeping; a benchmark may look).
            running = sum(1 for a in worker._active.values() if a.started)
            peak = max(peak, running)
            await asyncio.sleep(0.1)  # more often costs the worker CPU the figure counts

    sampler = asyncio.create_task(sample())
    connections = ConnectionCounter(app.store.url.target)
    connections.start()
    baseline, cpu0, t0 = rss_kib(), cpu_s(), time.perf_counter()
    try:
        stats = await asyncio.wait_for(worker.run(until_idle=True), timeout)
    finally:
        sampler.cancel()
        connections.stop.set()
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": cpu_s() - cpu0,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_rss_kib(),
        "peak_concurrent": peak,
        "peak_db_connections": connections.peak,
        "worker_succeeded": stats.succeeded,
        "worker_failed": stats.failed,
        "worker_retried": stats.retried,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rpm", type=float, default=3000)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--burst-s", type=float, help="RateLimit(burst_s=...); default: rota's")
    p.add_argument("--db-threads", type=int, help="Worker(db_threads=...); default: rota's")
    args = p.parse_args()
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    reset_database(args.dsn)
    app = build(args.dsn, args.base_url, args.rpm, args.burst_s)
    app.store.migrate()
    takes = Counter()
    take = app.store.take

    def counted_take(*a: Any, **kw: Any) -> float:
        wait = take(*a, **kw)
        takes["admitted" if wait <= 0 else "refused"] += 1
        return wait

    take_many = getattr(app.store, "take_many", None)  # absent in builds before issue 18

    def counted_take_many(batch: Any) -> list[float]:  # concurrent calls' turns, one transaction
        assert take_many is not None
        waits: list[float] = take_many(batch)
        takes["batches"] += 1
        for wait in waits:
            takes["admitted" if wait <= 0 else "refused"] += 1
        return waits

    app.store.take = counted_take  # type: ignore[method-assign]  # rate-limit DB round trips
    if take_many is not None:
        app.store.take_many = counted_take_many  # type: ignore[method-assign]
    app.run_many(AGENT, [task(i) for i in range(args.runs)])
    analyze(args.dsn)

    result = asyncio.run(drain(app, args.concurrency, args.timeout, args.db_threads))
    states = app.store.count_states([AGENT])
    errors = Counter(
        f"{(r.error or {}).get('type')}: {(r.error or {}).get('message', '')}"[:200]
        for r in app.runs(names=[AGENT], states=["FAILED"], limit=args.runs)
    )
    app.close()
    limit = f"requests_per_minute={args.rpm:g}"
    if args.burst_s is not None:
        limit += f", burst_s={args.burst_s:g}"
    emit(
        {
            "tool": "rota",
            **result,
            "runs": args.runs,
            "succeeded": states.get("SUCCEEDED", 0),
            "failed": states.get("FAILED", 0),
            "errors": dict(errors.most_common(3)),
            "limit_takes": dict(takes),
            "config": f"one worker process, concurrency={args.concurrency}; "
            f"Agent(rate_limit=RateLimit({limit})) shared through PostgreSQL; "
            "RetryingModel defaults (5 attempts, honours retry-after)",
        }
    )


if __name__ == "__main__":
    main()
