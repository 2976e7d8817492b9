"""How long one worker takes to begin a burst of runs due together, old build against new.

    .venv/bin/python -m bench.precision.burst_spread --build old=/tmp/old/src --build new=src

Each round, each build in turn (a fresh process, PYTHONPATH set to its source): one worker
on a SQLite file (256 slots, the runs leased ahead), `--bursts` bursts of `--runs` no-op runs
due at the same moment. For each burst: the spread from the first body's start to the last
(what the schedule-precision bench's last run waits for, without the scheduler, the
database's timing or the machine's other load in it), the time to the middle run, and the
garbage collections in between. Reported: per build, the median over all bursts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from rota import App  # the build under test: PYTHONPATH, set per build


def burst(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        app = App(f"sqlite:///{folder}/burst.sqlite")
        starts: list[float] = []
        collections: list[tuple[float, int]] = []

        @app.job
        async def tick(ctx: Any) -> None:
            starts.append(time.perf_counter())

        def seen(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append((time.perf_counter(), info["generation"]))

        app.run_many("tick", [None] * runs, delay=0.6)
        worker = app.worker(concurrency=256, lookahead_s=2.0, poll_interval_s=0.05)
        gc.callbacks.append(seen)
        asyncio.run(worker.run(until_idle=True))
        gc.callbacks.remove(seen)
        app.close()
    starts.sort()
    during = [g for t, g in collections if starts[0] <= t <= starts[-1]]
    return {
        "spread_ms": (starts[-1] - starts[0]) * 1000,
        "middle_ms": (starts[len(starts) // 2] - starts[0]) * 1000,
        "collections": len(during),
        "full_collections": during.count(2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", action="append", default=[], metavar="LABEL=SRC", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bursts", type=int, default=3, help="bursts per process")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps([burst(args.runs) for _ in range(args.bursts)]))
        return
    results: dict[str, list[dict[str, float]]] = {b.partition("=")[0]: [] for b in args.build}
    loads = []
    for _ in range(args.rounds):
        for build in args.build:
            label, _, src = build.partition("=")
            cmd = [sys.executable, "-m", "bench.precision.burst_spread", "--child"]
            cmd += ["--runs", str(args.runs), "--bursts", str(args.bursts), "--build", build]
            env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            results[label] += json.loads(out.stdout.strip().splitlines()[-1])
            loads.append(os.getloadavg()[0])
    print(f"{args.runs} runs a burst, {args.rounds} interleaved rounds of {args.bursts} bursts")
    print(f"load average (1 min) {min(loads):.2f}-{max(loads):.2f}")
    for label, bursts in results.items():
        med = {k: statistics.median(b[k] for b in bursts) for k in bursts[0]}
        worst = max(b["spread_ms"] for b in bursts)
        print(
            f"{label}: first to last start {med['spread_ms']:.1f} ms (worst {worst:.1f}), "
            f"to the middle run {med['middle_ms']:.1f} ms, collections in between "
            f"{med['collections']:.0f} (full: {sum(b['full_collections'] for b in bursts)} "
            f"in {len(bursts)} bursts)"
        )


if __name__ == "__main__":
    main()
