"""Queue drain of one rota build, for old-against-new comparisons on a busy machine.

    git worktree add /tmp/old <commit>
    for i in 1 2 3; do
      PYTHONPATH=/tmp/old/src .venv/bin/python -m bench.drain_ab   # the old build
      PYTHONPATH=src .venv/bin/python -m bench.drain_ab            # this one
    done

Each run enqueues N no-op jobs (default 20,000) in a fresh PostgreSQL schema and drains them
with `App.drain(concurrency=32)`; it prints jobs/s and which rota it imported. Run pairs back
to back and compare medians: on a shared machine only interleaved ratios mean anything.
"""

from __future__ import annotations

import argparse
import time
import uuid

import psycopg

import rota
from rota import App

BASE = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--dsn", default=BASE)
    args = p.parse_args()
    schema = f"ab_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        app = App(f"{args.dsn}?options=-csearch_path%3D{schema}")

        @app.job
        async def noop(ctx: object) -> None:
            return None

        for _ in range(0, args.jobs, 1000):
            app.run_many("noop", [None] * 1000)
        start = time.perf_counter()
        stats = app.drain(concurrency=args.concurrency)
        elapsed = time.perf_counter() - start
        app.close()
        print(
            f"{args.jobs / elapsed:,.0f} jobs/s ({stats.succeeded} ran) rota from {rota.__file__}"
        )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
