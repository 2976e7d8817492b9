"""Enqueue and drain throughput of no-op jobs: rota next to procrastinate, pgqueuer and DBOS.

    make bench-queue            # or: .venv-bench/bin/python -m bench.queue_throughput

Every tool gets the same job count and worker concurrency, a fresh database, and its own
subprocess; repeats are interleaved and medians reported.
"""

from __future__ import annotations

import argparse

from bench.harness import best_peer, fmt, machine, median, run_matrix, table

CASES = [
    ("rota", "postgresql"),
    ("pgqueuer", "postgresql"),
    ("procrastinate", "postgresql"),
    ("dbos", "postgresql"),
    ("rota", "sqlite"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tools", default=",".join(sorted({t for t, _ in CASES})))
    args = p.parse_args()
    tools = set(args.tools.split(","))
    cases = [c for c in CASES if c[0] in tools]
    results = run_matrix("queue", cases, args.repeat, jobs=args.jobs, concurrency=args.concurrency)
    best = best_peer(results, "postgresql", "drain_per_s", lambda a, b: a > b)
    rows = []
    for (tool, db), runs in results.items():
        drain = median(runs, "drain_per_s")
        ratio = f"{drain / best[1]:.2f}x" if best and db == "postgresql" else "n/a"
        rows.append(
            [
                tool,
                db,
                fmt(median(runs, "enqueue_per_s")),
                fmt(drain),
                ratio,
                len(runs),
                runs[0].get("notes", ""),
            ]
        )
    print(
        f"Queue throughput: {args.jobs:,} no-op jobs, worker concurrency "
        f"{args.concurrency}, median of {args.repeat} interleaved runs."
    )
    print(f"Machine: {machine()}\n")
    peer = f" (fastest peer: {best[0]})" if best else ""
    print(
        table(
            [
                "tool",
                "database",
                "enqueue jobs/s",
                "drain jobs/s",
                f"drain vs fastest peer{peer}",
                "runs",
                "configuration",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
