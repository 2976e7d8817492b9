"""The hand-off of a store call from the event loop to a database thread and back, alone:
`loop.run_in_executor` on a ThreadPoolExecutor (what the worker used before issue 18's
session 5) against `rota.batches.DatabaseThreads` (what it uses now), in one run.

    .venv/bin/python -m bench.agents.handoff --rounds 5

Each case runs `--tasks` concurrent tasks, each making `--calls` store calls (one
`SELECT 1` on PostgreSQL through a SqlStore, each thread its own connection, as the worker's
threads have), with a random pause of 0-`--pause-ms` between calls, so that calls mostly
arrive alone, as an agent run's writes do. Reported: the process's CPU time (every thread)
per call, median of the rounds, the two cases alternating in each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from bench.harness import PG, machine, table

from rota.batches import DatabaseThreads
from rota.storage import SqlStore

Call = Callable[..., Awaitable[Any]]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def select_one(store: SqlStore) -> None:
    store.conn().execute("SELECT 1")


async def measure(call: Call, store: SqlStore, tasks: int, calls: int, pause_s: float) -> float:
    """CPU microseconds per call."""
    rng = random.Random(18)
    for _ in range(8):  # every thread opens its connection before the clock starts
        await asyncio.gather(*(call(select_one, store) for _ in range(8)))

    async def one(seed: int) -> None:
        pauses = random.Random(seed)
        for _ in range(calls):
            await call(select_one, store)
            await asyncio.sleep(pauses.uniform(0, pause_s))

    cpu0 = cpu_s()
    await asyncio.gather(*(one(rng.randrange(1 << 30)) for _ in range(tasks)))
    return (cpu_s() - cpu0) / (tasks * calls) * 1e6


async def executor_case(store: SqlStore, args: argparse.Namespace) -> float:
    pool = ThreadPoolExecutor(args.threads, thread_name_prefix="rota-db")
    loop = asyncio.get_running_loop()

    async def call(fn: Callable[..., Any], *a: Any) -> Any:
        return await loop.run_in_executor(pool, partial(fn, *a))

    try:
        return await measure(call, store, args.tasks, args.calls, args.pause_ms / 1000)
    finally:
        pool.shutdown(wait=True)


async def threads_case(store: SqlStore, args: argparse.Namespace) -> float:
    threads = DatabaseThreads(args.threads, name="rota-db")
    try:
        return await measure(threads.call, store, args.tasks, args.calls, args.pause_ms / 1000)
    finally:
        threads.shutdown(wait=True)


CASES = {"run_in_executor": executor_case, "DatabaseThreads": threads_case}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default=f"{PG}/test")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--pause-ms", type=float, default=40.0)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()
    store = SqlStore(args.dsn)
    got: dict[str, list[float]] = {name: [] for name in CASES}
    loads = []
    for _ in range(args.rounds):
        for name, case in CASES.items():
            got[name].append(asyncio.run(case(store, args)))
        loads.append(os.getloadavg()[0])
    store.close()
    base = statistics.median(got["run_in_executor"])
    rows = [
        [
            name,
            f"{statistics.median(v):.1f}",
            ", ".join(f"{x:.0f}" for x in v),
            f"{statistics.median(v) / base:.2f}",
        ]
        for name, v in got.items()
    ]
    print(
        f"{args.tasks} tasks x {args.calls} calls, pause 0-{args.pause_ms:g} ms, "
        f"{args.threads} threads, {args.rounds} rounds; load average "
        f"{min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"Machine: {machine()}\n")
    print(table(["hand-off", "CPU us per call (median)", "rounds", "ratio"], rows))


if __name__ == "__main__":
    main()
