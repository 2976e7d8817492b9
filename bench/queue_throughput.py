"""Enqueue and drain throughput of no-op jobs: rota next to procrastinate, pgqueuer and DBOS.

    make bench-queue            # or: .venv-bench/bin/python -m bench.queue_throughput

Every tool gets the same job count, worker concurrency and warm-up, a fresh database, and
its own subprocess. Between two measurements the database server is settled the same way
for everyone: the previous case's database is dropped (so that autovacuum does not clean up
after one tool while the next is timed), a CHECKPOINT writes out its dirty pages (so that
the next tool does not pay for the previous one's writes), and the run waits for
autovacuum workers to finish. Rounds are interleaved and the order of the tools rotates
from round to round, so that no tool always follows the same one. The report gives each
figure's median, minimum and maximum over the rounds, and rota's ratio to the fastest peer
taken within each round (median and worst round): the figure that must hold in every run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from bench.harness import PG, dsn_for, fmt, machine, table
from bench.peers.run_peer import invoke

CASES = [
    ("rota", "postgresql"),
    ("pgqueuer", "postgresql"),
    ("procrastinate", "postgresql"),
    ("dbos", "postgresql"),
    ("rota", "sqlite"),
]
SETTLE_TIMEOUT_S = 30.0


def settle(dsn: str) -> None:
    """Drop the case's database, CHECKPOINT, and wait for autovacuum workers to finish."""
    drop = None
    if dsn.startswith("sqlite"):
        path = dsn.split(":///", 1)[1]
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    else:
        drop = dsn.rpartition("/")[2]
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if drop and drop.startswith("rota_bench_"):
            conn.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')
        conn.execute("CHECKPOINT")
        give_up = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < give_up:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not busy or not busy[0]:
                return
            time.sleep(0.2)


def run_rounds(
    cases: Sequence[tuple[str, str]], rounds: int, **params: int
) -> list[dict[tuple[str, str], dict[str, Any]]]:
    """Each round measures every case once, in an order rotated by the round's number."""
    out: list[dict[tuple[str, str], dict[str, Any]]] = []
    for r in range(rounds):
        shift = r % len(cases)
        got: dict[tuple[str, str], dict[str, Any]] = {}
        for tool, db in [*cases[shift:], *cases[:shift]]:
            dsn = dsn_for(tool.replace("@", "_"), db)
            settle(dsn)
            load = os.getloadavg()[0]
            print(f"[queue] round {r + 1}/{rounds}: {tool} on {db}", file=sys.stderr)
            result = _invoke(tool, dsn, params)
            if result is not None:
                result["load"] = load
                got[(tool, db)] = result
                print(f"   {result}", file=sys.stderr)
            settle(dsn)
        out.append(got)
    return out


OLD_SRC: str | None = None  # --old: another rota build's src, measured as "rota@old"


def _invoke(tool: str, dsn: str, params: dict[str, int]) -> dict[str, Any] | None:
    """One measurement in a fresh process; "rota@old" is rota imported from OLD_SRC."""
    if tool != "rota@old":
        return invoke(tool, "queue", dsn, **params)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(OLD_SRC)
    try:
        return invoke("rota", "queue", dsn, **params)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def ratio_per_round(
    rounds: list[dict[tuple[str, str], dict[str, Any]]], mine: str = "rota"
) -> list[float]:
    """rota's drain on PostgreSQL over the fastest peer's in the same round."""
    ratios = []
    for got in rounds:
        peers = [
            v["drain_per_s"]
            for (t, d), v in got.items()
            if not t.startswith("rota") and d == "postgresql"
        ]
        mine_got = got.get((mine, "postgresql"))
        if peers and mine_got:
            ratios.append(mine_got["drain_per_s"] / max(peers))
    return ratios


def spread(values: list[float]) -> str:
    """median (min-max)."""
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="rounds")
    p.add_argument("--warmup", type=int, default=2_000, help="untimed jobs first, every tool")
    p.add_argument("--tools", default=",".join(sorted({t for t, _ in CASES})))
    p.add_argument("--old", help="also measure the rota build in this src directory")
    args = p.parse_args()
    tools = set(args.tools.split(","))
    cases = [c for c in CASES if c[0] in tools]
    if args.old:
        global OLD_SRC
        OLD_SRC = args.old
        cases.insert(1, ("rota@old", "postgresql"))
    rounds = run_rounds(
        cases, args.repeat, jobs=args.jobs, concurrency=args.concurrency, warmup=args.warmup
    )
    ratios = {tool: ratio_per_round(rounds, tool) for tool in ("rota", "rota@old")}
    rows = []
    for case in cases:
        runs = [got[case] for got in rounds if case in got]
        if not runs:
            continue
        tool, db = case
        ratio = "n/a"
        if db == "postgresql" and ratios.get(tool):
            ratio = f"{statistics.median(ratios[tool]):.2f}x (worst {min(ratios[tool]):.2f}x)"
        rows.append(
            [
                tool,
                db,
                spread([r["enqueue_per_s"] for r in runs]),
                spread([r["drain_per_s"] for r in runs]),
                ratio,
                len(runs),
                f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f}",
                runs[0].get("notes", ""),
            ]
        )
    print(
        f"Queue throughput: {args.jobs:,} no-op jobs, worker concurrency {args.concurrency}, "
        f"{args.warmup:,} untimed warm-up jobs per tool; median (min-max) of {args.repeat} "
        "interleaved rounds, order rotated each round, server settled between cases."
    )
    print(f"Machine: {machine()}\n")
    print(
        table(
            [
                "tool",
                "database",
                "enqueue jobs/s",
                "drain jobs/s",
                "drain vs fastest peer, same round",
                "rounds",
                "load average",
                "configuration",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
