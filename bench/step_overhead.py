"""Per-step checkpoint overhead of durable workflows: rota next to DBOS.

    make bench-steps            # or: .venv-bench/bin/python -m bench.step_overhead

Overhead per step = (time of W workflows with S no-op steps - time of W workflows with none)
/ (W * S), on PostgreSQL and SQLite, each tool in its own subprocess, repeats interleaved.
"""

from __future__ import annotations

import argparse

from bench.harness import fmt, machine, median, run_matrix, table

CASES = [("rota", "postgresql"), ("dbos", "postgresql"), ("rota", "sqlite"), ("dbos", "sqlite")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    results = run_matrix("steps", CASES, args.repeat, workflows=args.workflows, steps=args.steps)
    rows = []
    for (tool, db), runs in results.items():
        us = median(runs, "us_per_step")
        dbos = results.get(("dbos", db))
        ratio = f"{us / median(dbos, 'us_per_step'):.2f}x" if dbos else "n/a"
        rows.append([tool, db, fmt(us, 1), ratio, len(runs), runs[0].get("notes", "")])
    print(
        f"Step overhead: {args.workflows} workflows x {args.steps} no-op steps, minus the "
        f"same workflows with no steps; median of {args.repeat} interleaved runs."
    )
    print(f"Machine: {machine()}\n")
    print(table(["tool", "database", "us per step", "vs DBOS", "runs", "notes"], rows))


if __name__ == "__main__":
    main()
