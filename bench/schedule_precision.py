"""Schedule precision: 1,000 schedules firing every second, rota next to APScheduler 3.

    .venv-bench/bin/python -m bench.schedule_precision       # about 3.5 minutes

For each tool and database: a fresh database, 1,000 no-op schedules that fire every second,
a warm-up (5 s) and then a window (60 s) in which every (schedule, whole second) is judged:
lateness of the run's start after its nominal fire time (p50, p99, max), missed ticks (no run
started), duplicate ticks (more than one run, or a run executed twice), and the CPU of the
scheduler over the window in percent of one core, apart from that of whoever runs the jobs.

rota: `rota scheduler` and `rota worker` equivalents, each in its own process, on PostgreSQL
and on SQLite. APScheduler 3: a `BackgroundScheduler` in one process with its memory job
store (its in-process mode) and a thread pool. Each case runs in a fresh subprocess of the
bench virtualenv; repeats are interleaved and medians reported (missed and duplicates: the
worst round). Goal for rota: no missed or duplicate ticks, p99 under 50 ms, scheduler CPU
under 10% of one core.

The machine is shared, so each case also reports the CPU other processes used during its
window; a case with more than BUSY_PCT is flagged. `--profile DIR` records rota's scheduler
and worker with py-spy (raw stacks). To measure a commit while the tree is being edited:
`git archive HEAD src | tar -x -C /tmp/pinned` and run with `PYTHONPATH=/tmp/pinned/src`;
the report names the rota it imported. To compare builds in one command, name each with
`--build LABEL=SRC` (repeatable; `--build new=src --build old=/tmp/old/src`): every round
measures each build in turn on each database, then APScheduler, and a last table gives every
window with the load average beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.harness import machine, table

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("rota", "postgresql"), ("rota", "sqlite"), ("apscheduler", "memory")]
LOCK_FILE = "/tmp/rota_bench_precision.lock"
BUSY_PCT = 20.0  # other load (% of one core) above which a case is flagged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument("--window", type=int, default=60, help="seconds judged (after warm-up)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--tools", default="rota,apscheduler")
    p.add_argument("--dbs", default="postgresql,sqlite", help="rota's databases")
    p.add_argument("--concurrency", type=int, default=256, help="rota worker slots")
    p.add_argument("--poll", type=float, default=0.05, help="rota worker poll interval (s)")
    p.add_argument("--threads", type=int, default=20, help="APScheduler thread pool size")
    p.add_argument("--scheduler-batch", type=int, help="rota Scheduler(batch=...) to try")
    p.add_argument("--profile", metavar="DIR", help="py-spy rota's processes (raw stacks)")
    p.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="LABEL=SRC",
        help="measure the rota under SRC as rota@LABEL (repeatable; default: this tree)",
    )
    args = p.parse_args()
    tools, dbs = set(args.tools.split(",")), set(args.dbs.split(","))
    cases = [
        (tool, d)
        for t, d in CASES
        if t in tools and (t != "rota" or d in dbs)
        for tool in (_labels(args.build) if t == "rota" else [t])
    ]

    results: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
    with exclusive(LOCK_FILE):
        started = time.monotonic()
        for round_no in range(1, args.repeat + 1):
            for tool, db in cases:
                print(
                    f"[precision] round {round_no}/{args.repeat}: {tool} on {db}", file=sys.stderr
                )
                result = invoke(tool, db, args)
                print("   " + json.dumps(result), file=sys.stderr)
                results[(tool, db)].append(result)
        elapsed = time.monotonic() - started

    rounds = f"median of {args.repeat} interleaved rounds" if args.repeat > 1 else "1 round"
    print(
        f"Schedule precision: {args.schedules:,} schedules firing every second, "
        f"{args.window} s window after a {args.warmup} s warm-up; {rounds} "
        "(missed/duplicates: worst round). Lateness = run start - nominal fire time."
    )
    print(f"Machine: {machine()}; rota {commit()}; whole command {elapsed:.0f} s\n")
    print(table(HEADERS, [row(runs) for runs in results.values()]))
    print()
    print(table(DETAIL_HEADERS, [detail(runs) for runs in results.values()]))
    if args.repeat > 1 or args.build:
        print()
        print(table(WINDOW_HEADERS, windows(results)))
    busy = [
        f"{tool}/{db}"
        for (tool, db), runs in results.items()
        if any((_other_load(r) or 0) > BUSY_PCT for r in runs)
    ]
    if busy:
        print(
            f"\nWarning: other work used more than {BUSY_PCT:.0f}% of a core during "
            f"{', '.join(busy)}; those numbers are skewed - rerun on a quiet machine."
        )


@contextlib.contextmanager
def exclusive(path: str) -> Iterator[None]:
    """One run at a time: runs share the database names (reset at start) and the CPU."""
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[precision] another run holds {path}; waiting for it", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def commit() -> str:
    """Which rota was measured: the bench venv installs this tree editable, but PYTHONPATH
    may point at a pinned copy (e.g. `git archive HEAD src | tar -x -C /tmp/rota_pinned`)."""
    import rota

    src = os.path.dirname(os.path.dirname(os.path.abspath(rota.__file__)))
    if src != os.path.join(REPO_ROOT, "src"):
        return f"from {src}"
    git = ["git", "-C", REPO_ROOT]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return f"at {head.stdout.strip() or '?'}" + (" + local changes" if dirty.stdout.strip() else "")


def _labels(builds: list[str]) -> list[str]:
    return [f"rota@{b.partition('=')[0]}" for b in builds] or ["rota"]


def _env(tool: str, builds: list[str]) -> dict[str, str] | None:
    """The environment of a case: a build's source first on the path."""
    for build in builds:
        label, _, src = build.partition("=")
        if tool == f"rota@{label}":
            return {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    return None


def invoke(tool: str, db: str, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--schedules", str(args.schedules), "--window", str(args.window)]
    common += ["--warmup", str(args.warmup)]
    if tool.startswith("rota"):
        cmd = ["-m", "bench.precision.rota_case", "--db", db, *common]
        cmd += ["--concurrency", str(args.concurrency), "--poll", str(args.poll)]
        if args.scheduler_batch:
            cmd += ["--scheduler-batch", str(args.scheduler_batch)]
        if args.profile:
            cmd += ["--profile", args.profile]
    else:
        cmd = ["-m", "bench.precision.apscheduler_case", *common, "--threads", str(args.threads)]
    budget = args.warmup + args.window + 180  # startup, drain and analysis included
    proc = subprocess.run(
        [sys.executable, *cmd],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=budget,
        env=_env(tool, args.build),
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{tool} on {db} failed:\n{proc.stderr[-3000:]}")
    ended = time.strftime("%H:%M:%S", time.gmtime())
    return {**json.loads(lines[-1]), "tool": tool, "ended_utc": ended, "load1": os.getloadavg()[0]}


HEADERS = [
    "tool",
    "database",
    "schedules",
    "window s",
    "ticks expected",
    "runs",
    "missed",
    "duplicates",
    "p50 ms",
    "p99 ms",
    "max ms",
    "scheduler CPU % of one core",
    "worker CPU %",
]
DETAIL_HEADERS = [
    "tool",
    "database",
    "late > 50 ms %",
    "p99 in the job function ms",
    "rota stages ms: wake p99 / first start p50 / spread p50",
    "PostgreSQL server CPU %",
    "other load on the machine % of one core",
    "rounds",
    "configuration",
]


WINDOW_HEADERS = [
    "round",
    "ended (UTC)",
    "tool",
    "database",
    "p50 / p99 in the job ms",
    "missed / duplicates",
    "worker CPU %",
    "other load % of one core",
    "load average (1 min)",
]


def windows(results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[list[Any]]:
    """Every window measured, round by round: the spread the medians hide."""
    rows = []
    for (tool, db), runs in results.items():
        for round_no, r in enumerate(runs, 1):
            timing = r.get("in_function") or r
            rows.append(
                [
                    round_no,
                    r.get("ended_utc", ""),
                    tool,
                    db,
                    f"{_num(timing.get('p50_ms'))} / {_num(timing.get('p99_ms'))}",
                    f"{r.get('missed')} / {r.get('duplicates')}",
                    _num(r.get("worker_cpu_pct")),
                    _num(_other_load(r)),
                    _num(r.get("load1"), 2),
                ]
            )
    return sorted(rows, key=lambda row: (row[0], row[3], row[2]))


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _stages(runs: list[dict[str, Any]]) -> str:
    stages = [r["stages"] for r in runs if r.get("stages")]
    if not stages:
        return "n/a"
    keys = ("wake_p99_ms", "first_start_p50_ms", "spread_p50_ms")
    return " / ".join(_num(_median(stages, k), 0) for k in keys)


def _other_load(run: dict[str, Any]) -> float | None:
    """Machine CPU over the window not used by this case's processes (scheduler, worker,
    their PostgreSQL backends): other work on a shared machine, which skews the case."""
    own = ("scheduler_cpu_pct", "worker_cpu_pct", "postgres_cpu_pct")
    if run.get("machine_cpu_pct") is None or run.get("scheduler_cpu_pct") is None:
        return None
    return max(0.0, run["machine_cpu_pct"] - sum(run.get(k) or 0.0 for k in own))


def row(runs: list[dict[str, Any]]) -> list[Any]:
    first = runs[0]
    return [
        first["tool"],
        first["db"],
        f"{first['schedules']:,}",
        first["window_s"],
        f"{first['expected']:,}",
        f"{round(_median(runs, 'runs') or 0):,}",
        max(r["missed"] for r in runs),
        max(r["duplicates"] for r in runs),
        _num(_median(runs, "p50_ms")),
        _num(_median(runs, "p99_ms")),
        _num(_median(runs, "max_ms")),
        _num(_median(runs, "scheduler_cpu_pct")),
        _num(_median(runs, "worker_cpu_pct")),
    ]


def detail(runs: list[dict[str, Any]]) -> list[Any]:
    first = runs[0]
    in_function = [r["in_function"] for r in runs if r.get("in_function")]
    return [
        first["tool"],
        first["db"],
        _num(_median(runs, "over_50ms_pct")),
        _num(_median(in_function, "p99_ms")) if in_function else "same (measured there)",
        _stages(runs),
        _num(_median(runs, "postgres_cpu_pct")) if first["db"] == "postgresql" else "n/a",
        _num(_median([{"other": _other_load(r)} for r in runs], "other")),
        len(runs),
        first.get("config", ""),
    ]


if __name__ == "__main__":
    main()
