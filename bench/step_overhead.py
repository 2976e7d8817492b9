"""The cost of one durable step, measured per step: rota next to DBOS, on PostgreSQL and SQLite.

    make bench-steps            # or: .venv-bench/bin/python -m bench.step_overhead

Each case runs in a fresh process of the bench virtualenv (tool x database, rounds
interleaved) and measures, inside the workflow itself:

- latency: a timestamp before and after every `ctx.step` / `@DBOS.step()` call of a no-op
  function; the figure is the median over every step (also the 95th percentile);
- CPU: the process's CPU time (every thread: the database driver's too) from the first step's
  start to the last step's end, divided by the number of steps;
- the same no-op function called directly, without a step, N times: the part of both figures
  that is not the checkpoint (well under a microsecond here).

Two shapes: "sequential", ONE workflow of `--steps` steps (each step's checkpoint is committed
before the next begins), and "concurrent", `--workflows` workflows of `--steps` /
`--workflows` steps each, started together (rota: one worker with that many slots; DBOS: its
workflows started with `DBOS.start_workflow`, which runs them on its threads). Every figure
is a time measured around something that happened, never a difference of two totals, so it
cannot come out negative; start-up, enqueue and idle detection are outside every window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import PG, fmt, machine, table
from bench.peers.common import reset_database

from rota import App

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(REPO_ROOT / ".venv-bench" / "bin" / "python")
CASES = [("rota", "postgresql"), ("dbos", "postgresql"), ("rota", "sqlite"), ("dbos", "sqlite")]
SHAPES = ("sequential", "concurrent")


class Timeline:
    """Per-step timestamps taken inside the workflows (any thread), and the process's CPU time
    at the first step's start and the last step's end."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget what was timed: the next shape starts afresh."""
        self.latencies: list[float] = []
        self.first: tuple[float, float] | None = None  # (wall, cpu) at the first step's start
        self.last: tuple[float, float] = (0.0, 0.0)  # (wall, cpu) at the last step's end

    def started(self) -> float:
        now = time.perf_counter()
        if self.first is None:
            with self.lock:
                if self.first is None:
                    self.first = (now, time.process_time())
        return now

    def ended(self, began: float) -> None:
        now = time.perf_counter()
        cpu = time.process_time()
        with self.lock:
            self.latencies.append(now - began)
            self.last = max(self.last, (now, cpu))

    def summary(self, steps: int) -> dict[str, float]:
        if len(self.latencies) != steps or self.first is None:
            raise RuntimeError(f"expected {steps} steps, timed {len(self.latencies)}")
        ordered = sorted(self.latencies)
        wall = self.last[0] - self.first[0]
        return {
            "latency_us": statistics.median(ordered) * 1e6,
            "latency_p95_us": ordered[int(0.95 * (len(ordered) - 1))] * 1e6,
            "cpu_us": (self.last[1] - self.first[1]) / steps * 1e6,
            "steps_per_s": steps / wall,
        }


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def direct_calls(n: int) -> dict[str, float]:
    """The no-op called without a step (async for rota, as its steps call it): the part of
    a step's figures that is not the checkpoint."""

    async def calls() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        spent = []
        for _ in range(n):
            began = time.perf_counter()
            await anoop()
            spent.append(time.perf_counter() - began)  # the same timestamps as a step
        return time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = asyncio.run(calls())
    return {"direct_us": wall / n * 1e6, "direct_cpu_us": cpu / n * 1e6}


# -- rota ---------------------------------------------------------------------------------


def rota_case(dsn: str, steps: int, workflows: int) -> dict[str, Any]:
    timeline = Timeline()
    reset_database(dsn)
    app = App(dsn)

    @app.workflow
    async def with_steps(ctx: Any, n: int) -> None:
        for _ in range(n):
            began = timeline.started()
            await ctx.step("s", anoop)
            timeline.ended(began)

    app.store.migrate()
    out: dict[str, Any] = {}
    for shape, count, slots in (("sequential", 1, 1), ("concurrent", workflows, workflows)):
        timeline.reset()
        app.run_many("with_steps", [steps // count] * count)
        stats = asyncio.run(app.worker(concurrency=slots).run(until_idle=True))
        if stats.succeeded != count:
            raise RuntimeError(f"{shape}: {stats.succeeded} of {count} workflows succeeded")
        out[shape] = timeline.summary(steps // count * count)
    app.close()
    return out


# -- DBOS ---------------------------------------------------------------------------------


def dbos_case(dsn: str, steps: int, workflows: int) -> dict[str, Any]:
    from dbos import DBOS, DBOSConfig  # only in DBOS's process: heavy

    timeline = Timeline()

    @DBOS.step()
    def noop_step() -> None:
        noop()

    @DBOS.workflow()
    def with_steps(n: int) -> None:
        for _ in range(n):
            began = timeline.started()
            noop_step()
            timeline.ended(began)

    reset_database(dsn)
    config: DBOSConfig = {"name": "rota-bench", "system_database_url": dsn, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    out: dict[str, Any] = {}
    try:
        with_steps(1)  # warm-up, untimed
        timeline.reset()
        with_steps(steps)  # called directly: runs in this thread, as DBOS's docs show
        out["sequential"] = timeline.summary(steps)
        timeline.reset()
        handles = [DBOS.start_workflow(with_steps, steps // workflows) for _ in range(workflows)]
        for handle in handles:
            handle.get_result()
        out["concurrent"] = timeline.summary(steps // workflows * workflows)
    finally:
        DBOS.destroy()
    return out


def child_main(argv: list[str]) -> None:
    tool, dsn, steps, workflows = argv[0], argv[1], int(argv[2]), int(argv[3])
    case = rota_case if tool == "rota" else dbos_case
    result = case(dsn, steps, workflows)
    result.update(direct_calls(steps))
    print(json.dumps(result), flush=True)


# -- the parent ---------------------------------------------------------------------------


def dsn_for(tool: str, db: str) -> str:
    if db == "sqlite":
        return f"sqlite:////tmp/rota_bench_steps_{tool}.sqlite"
    return f"{PG}/rota_bench_steps_{tool}"


def run_case(tool: str, db: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [args.python, "-m", "bench.step_overhead", "--child", tool, dsn_for(tool, db)]
    cmd += [str(args.steps), str(args.workflows)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), args.src])}
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=args.timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} on {db} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500, help="steps per shape and case")
    p.add_argument("--workflows", type=int, default=10, help="concurrent workflows")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    p.add_argument("--python", default=PYTHON, help="the interpreter of the cases")
    p.add_argument("--src", default=str(REPO_ROOT / "src"), help="rota's src directory")
    p.add_argument("--timeout", type=float, default=600, help="seconds per case")
    args = p.parse_args()
    got: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in CASES}
    for round_no in range(1, args.repeat + 1):
        for tool, db in CASES:
            print(f"[steps] round {round_no}/{args.repeat}: {tool} on {db}", file=sys.stderr)
            got[(tool, db)].append(result := run_case(tool, db, args))
            print("   " + json.dumps(result), file=sys.stderr)

    def med(tool: str, db: str, shape: str, key: str) -> float:
        return statistics.median(r[shape][key] for r in got[(tool, db)])

    rows = []
    for tool, db in CASES:
        direct = statistics.median(r["direct_us"] for r in got[(tool, db)])
        for shape in SHAPES:
            lat, cpu = med(tool, db, shape, "latency_us"), med(tool, db, shape, "cpu_us")
            vs = ""
            if tool == "rota":
                d_lat, d_cpu = (
                    med("dbos", db, shape, "latency_us"),
                    med("dbos", db, shape, "cpu_us"),
                )
                vs = f"{lat / d_lat:.2f}x / {cpu / d_cpu:.2f}x"
            rows.append(
                [
                    tool,
                    db,
                    shape,
                    fmt(lat, 1),
                    fmt(med(tool, db, shape, "latency_p95_us"), 1),
                    fmt(cpu, 1),
                    fmt(med(tool, db, shape, "steps_per_s")),
                    vs,
                    f"{direct:.2f}",
                ]
            )
    print(
        f"Durable step cost, measured per step: sequential = one workflow of {args.steps} no-op "
        f"steps; concurrent = {args.workflows} workflows of {args.steps // args.workflows} "
        f"steps at once. Median of {args.repeat} interleaved rounds, each case a fresh process."
    )
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    command = [".venv-bench/bin/python", "-m", "bench.step_overhead", *sys.argv[1:]]
    print(f"Command: {' '.join(command)}\n")
    print(
        table(
            [
                "tool",
                "database",
                "shape",
                "latency us per step (median)",
                "p95 us",
                "CPU us per step",
                "steps/s",
                "rota / DBOS (latency / CPU; goal <= 0.2)",
                "direct no-op call us",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
