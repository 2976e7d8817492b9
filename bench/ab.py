"""Old rota against new in one run: queue drain, enqueue, step cost, agent CPU per model call.

    git worktree add /tmp/rota-old <commit>
    .venv/bin/python -m bench.ab --old /tmp/rota-old/src --rounds 5
    .venv/bin/python -m bench.ab --old /tmp/rota-old/src --figures agents,offline --rounds 3

Each round measures every figure once for the old build, then once for the new one, each in
a fresh child process whose PYTHONPATH picks the build (the bench code is this checkout's for
both), so a busy machine slows both alike. Besides wall-clock rates it reports the child's
own CPU time per job, per step and per model call: on a shared machine CPU time moves far
less than wall time, so it is the figure to compare. It prints each figure's median per
build and the ratio new/old. Uses the project's own venv: only rota and psycopg are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import agent_fanout, step_overhead
from bench.harness import PG, machine, table
from bench.peers.common import reset_database

REPO_ROOT = Path(__file__).resolve().parent.parent
QUEUE_DSN = f"{PG}/rota_bench_ab"
STEPS_DSNS = {"PostgreSQL": f"{PG}/rota_bench_ab", "SQLite": "sqlite:////tmp/rota_bench_ab.db"}


# -- the child: one measurement of the build on PYTHONPATH, printed as one JSON line ------


def queue_child(dsn: str, jobs: int) -> dict[str, float]:
    from rota import App

    reset_database(dsn)
    app = App(dsn)

    @app.job
    async def noop(ctx: Any) -> None:
        return None

    app.store.migrate()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(0, jobs, 1000):
        app.run_many("noop", [None] * 1000)
    enqueue = (time.process_time() - cpu, time.perf_counter() - wall)
    cpu, wall = time.process_time(), time.perf_counter()
    stats = app.drain(concurrency=32)
    drain = (time.process_time() - cpu, time.perf_counter() - wall)
    app.close()
    assert stats.succeeded == jobs, stats
    return {
        "enqueue_per_s": jobs / enqueue[1],
        "enqueue_cpu_us_per_job": enqueue[0] / jobs * 1e6,
        "drain_per_s": jobs / drain[1],
        "drain_cpu_us_per_job": drain[0] / jobs * 1e6,
    }


def steps_child(dsn: str, workflows: int, steps: int) -> dict[str, float]:
    """Per-step latency and CPU, measured inside the workflow (bench/step_overhead.py): one
    workflow of `steps` steps, then `workflows` workflows sharing `steps` at once."""
    got = step_overhead.rota_case(dsn, steps, workflows)
    return {
        f"step_{key}_{shape}": got[shape][key]
        for shape in ("sequential", "concurrent")
        for key in ("latency_us", "cpu_us")
    }


def child_main(argv: list[str]) -> None:
    kind, dsn, *numbers = argv
    values = [int(x) for x in numbers]
    result = queue_child(dsn, *values) if kind == "queue" else steps_child(dsn, *values)
    print(json.dumps(result), flush=True)


# -- the parent ------------------------------------------------------------------------


def _child(src: str, *argv: object) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, "-m", "bench.ab", "--child", *map(str, argv)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agents(src: str, runs: int) -> dict[str, float]:
    fan = argparse.Namespace(
        runs=runs,
        rpm=3000.0,
        latency="1,3",
        burst=1.0,
        seed=1,
        concurrency=1000,
        plain_runs=0,
        tools="rota",
        timeout=240.0,
        rota_burst=None,
        profile=None,
        logs="/tmp/rota_bench_ab",
    )
    Path(fan.logs).mkdir(parents=True, exist_ok=True)
    agent_fanout.PYTHON = sys.executable  # this venv, not the peers' one
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src  # run_case passes os.environ to the case's process
    try:
        with (Path(fan.logs) / "provider.log").open("w") as log:
            provider = agent_fanout.Provider(fan, log)
            try:
                r = agent_fanout.run_case("rota", fan, provider, Path(fan.logs))
            finally:
                provider.close()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    answered = r.get("provider", {}).get("accepted", 0)
    if "error" in r or not answered or r.get("failed"):
        raise RuntimeError(f"agent case failed: {r}")
    return {"agent_cpu_ms_per_call": float(r["cpu_s"]) / answered * 1000}


def _offline(src: str, runs: int) -> dict[str, float]:
    """The fan-out's agent over an offline provider (bench/agents/offline_case.py): rota's
    own CPU per model call, no SDK, in a child whose PYTHONPATH picks the build."""
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, "-m", "bench.agents.offline_case", "--runs", str(runs)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["succeeded"] != runs:
        raise RuntimeError(f"offline agent case failed: {r}")
    return {
        "offline_cpu_ms_per_call": r["cpu_ms_per_call"],
        "offline_loop_cpu_ms_per_call": r["loop_cpu_ms_per_call"],
    }


# figure -> (label, higher is better)
FIGURES = {
    "drain_per_s": ("queue drain, jobs/s (PostgreSQL)", True),
    "drain_cpu_us_per_job": ("queue drain, CPU us per job (PostgreSQL)", False),
    "enqueue_per_s": ("enqueue in batches of 1,000, jobs/s (PostgreSQL)", True),
    "enqueue_cpu_us_per_job": ("enqueue, CPU us per job (PostgreSQL)", False),
    "step_latency_us_sequential:PostgreSQL": (
        "durable step, latency us, sequential (PostgreSQL)",
        False,
    ),
    "step_cpu_us_sequential:PostgreSQL": (
        "durable step, CPU us per step, sequential (PostgreSQL)",
        False,
    ),
    "step_latency_us_concurrent:PostgreSQL": (
        "durable step, latency us, concurrent (PostgreSQL)",
        False,
    ),
    "step_cpu_us_concurrent:PostgreSQL": (
        "durable step, CPU us per step, concurrent (PostgreSQL)",
        False,
    ),
    "step_latency_us_sequential:SQLite": ("durable step, latency us, sequential (SQLite)", False),
    "step_cpu_us_sequential:SQLite": ("durable step, CPU us per step, sequential (SQLite)", False),
    "step_latency_us_concurrent:SQLite": ("durable step, latency us, concurrent (SQLite)", False),
    "step_cpu_us_concurrent:SQLite": ("durable step, CPU us per step, concurrent (SQLite)", False),
    "agent_cpu_ms_per_call": ("agent fan-out, CPU ms per model call", False),
    "offline_cpu_ms_per_call": ("agent, offline provider, CPU ms per model call", False),
    "offline_loop_cpu_ms_per_call": (
        "agent, offline provider, event loop thread's CPU ms per model call",
        False,
    ),
}


def _round(src: str, args: argparse.Namespace) -> dict[str, float]:
    figures = args.figures.split(",")
    got = dict(_child(src, "queue", QUEUE_DSN, args.jobs)) if "queue" in figures else {}
    for db, dsn in STEPS_DSNS.items() if "steps" in figures else ():
        for key, value in _child(src, "steps", dsn, args.workflows, args.steps).items():
            got[f"{key}:{db}"] = value
    if args.agent_runs and "agents" in figures:
        got.update(_agents(src, args.agent_runs))
    if args.agent_runs and "offline" in figures:
        got.update(_offline(src, args.agent_runs))
    return got


def _shown(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.1f}"  # ms per call: two decimals


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="the old build's src directory")
    p.add_argument("--new", default=str(REPO_ROOT / "src"), help="the new build's src")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--workflows", type=int, default=10, help="concurrent workflows (steps)")
    p.add_argument("--steps", type=int, default=500, help="steps per shape")
    p.add_argument(
        "--figures", default="queue,steps,agents", help="which to measure (also: offline)"
    )
    p.add_argument("--agent-runs", type=int, default=300, help="0: skip the agent figure")
    args = p.parse_args()
    got: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for i in range(args.rounds):
        for build, src in (("old", args.old), ("new", args.new)):
            for key, value in _round(src, args).items():
                got[build].setdefault(key, []).append(value)
            print(f"[ab] round {i + 1} {build}: {json.dumps(got[build])}", file=sys.stderr)
    rows = []
    for key, (label, higher) in FIGURES.items():
        if key not in got["new"]:
            continue
        old, new = (statistics.median(got[b][key]) for b in ("old", "new"))
        better = new >= old if higher else new <= old
        verdict = "same or better" if better else "worse"
        rows.append([label, _shown(old), _shown(new), f"{new / old:.3f}", verdict])
    print(f"Old {args.old} against new {args.new}: median of {args.rounds} interleaved rounds.")
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"Command: {' '.join([sys.executable, '-m', 'bench.ab', *sys.argv[1:]])}\n")
    print(table(["figure", "old", "new", "new / old", "verdict"], rows))


if __name__ == "__main__":
    main()
