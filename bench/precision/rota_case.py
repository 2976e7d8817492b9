"""rota's half of the schedule-precision benchmark, on one database.

    python -m bench.precision.rota_case --db postgresql --schedules 1000 --window 60

A fresh database; the worker and then the scheduler each in their own process (as with
`rota worker` and `rota scheduler`); the scheduler stops half a second after the window, the
worker once every run due in the window has started. Then the store is read: lateness is
`started_at - run_after` (a scheduled run's run_after is its nominal fire time, its
idempotency key the tick id `{schedule}@{fire time}`). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench.harness import PG
from bench.peers.common import reset_database

from .measure import (
    CpuSampler,
    Record,
    Window,
    machine_busy_s,
    percentile,
    processes_cpu_s,
    summarize,
)
from .rota_app import build_app, names

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DB_NAME = "rota_bench_precision"
DRAIN_TIMEOUT_S = 30.0


def url_for(db: str) -> str:
    if db == "sqlite":
        return f"sqlite:////tmp/{DB_NAME}.sqlite"
    return f"{PG}/{DB_NAME}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("postgresql", "sqlite"), required=True)
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--scheduler-batch", type=int, help="Scheduler(batch=...); default: rota's")
    p.add_argument("--profile", metavar="DIR", help="py-spy both processes over the window")
    args = p.parse_args()
    print(json.dumps(run(args)), flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = url_for(args.db)
    reset_database(url)
    app = build_app(url, args.schedules)
    app.store.migrate()
    app.close()

    window = Window.after(time.time(), args.warmup, args.window)
    common = [
        "--schedules",
        str(args.schedules),
        "--window-start",
        str(window.start),
        "--window-end",
        str(window.end),
    ]
    logs = tempfile.mkdtemp(prefix="rota_precision_")
    worker = _spawn(
        "rota_worker",
        [url, *common, "--concurrency", str(args.concurrency), "--poll", str(args.poll)],
        os.path.join(logs, "worker.log"),
    )
    batch = [] if args.scheduler_batch is None else ["--batch", str(args.scheduler_batch)]
    scheduler = _spawn(
        "rota_scheduler",
        [url, *common, "--until", str(window.end + 0.5), *batch],
        os.path.join(logs, "scheduler.log"),
    )
    host = CpuSampler(
        window,
        {
            "postgres": lambda: processes_cpu_s("postgres", f" {DB_NAME} "),
            "machine": lambda: machine_busy_s()[0],
        },
    ).start()
    profilers = []
    if args.profile:
        profilers = _profile(args.profile, args.db, window, scheduler=scheduler, worker=worker)

    try:
        sched_out = _result(scheduler, "scheduler", window.end + 60)
        app = build_app(url, args.schedules)
        drained = _wait_drained(app, window)
        worker.send_signal(signal.SIGTERM)
        worker_out = _result(worker, "worker", time.time() + 60)
    finally:
        for proc in (scheduler, worker, *profilers):
            if proc.poll() is None:
                proc.kill()
    for proc in profilers:
        proc.wait(timeout=30)

    rows = app.store.conn().execute(
        """SELECT name, idempotency_key, run_after, created_at, started_at, attempt FROM rota_runs
        WHERE trigger = 'schedule'"""
    )
    skipped = app.store.conn().execute(
        """SELECT outcome, reason, SUM(ticks) AS n FROM rota_ticks
        WHERE fire_at >= :start AND fire_at < :end AND outcome <> 'enqueued'
        GROUP BY outcome, reason""",
        {"start": window.start, "end": window.end},
    )
    app.close()
    records, key_mismatch = _records(rows)
    out: dict[str, Any] = {
        "tool": "rota",
        "db": args.db,
        **summarize(records, names(args.schedules), window),
        "scheduler_cpu_pct": sched_out.get("cpu_pct"),
        "worker_cpu_pct": worker_out.get("cpu_pct"),
        "postgres_cpu_pct": host.result().get("postgres_pct"),
        "machine_cpu_pct": host.result().get("machine_pct"),
        "in_function": worker_out.get("in_function"),
        "stages": _stages(rows, window),
        "skipped_ticks": {f"{r['outcome']}:{r['reason']}": r["n"] for r in skipped},
        "key_mismatch": key_mismatch,
        "drained": drained,
        "synced_before_window_s": round(window.start - sched_out["synced_at"], 2),
        "config": f"1 scheduler process{_batch(args)}, 1 worker process (concurrency "
        f"{args.concurrency}, poll {args.poll}s"
        f"{', LISTEN/NOTIFY' if args.db == 'postgresql' else ''})",
        "logs": _keep_if_written(logs),
    }
    if args.profile:
        out["profiled"] = args.profile
    for name, result in (("scheduler", sched_out), ("worker", worker_out)):
        for key in ("cpu_error", "cpu_warning"):
            if key in result:
                out[f"{name}_{key}"] = result[key]
    return out


def _spawn(module: str, argv: list[str], log: str) -> subprocess.Popen[str]:
    with open(log, "w") as stderr:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", f"bench.precision.{module}", *argv],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def _result(proc: subprocess.Popen[str], what: str, deadline: float) -> dict[str, Any]:
    try:
        stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"rota {what} did not finish in time") from None
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"rota {what} failed (exit {proc.returncode}); see its log")
    return json.loads(lines[-1])


def _wait_drained(app: Any, window: Window) -> bool:
    """Wait until every run due before the window's end has been claimed."""
    deadline = time.time() + DRAIN_TIMEOUT_S
    while time.time() < deadline:
        rows = app.store.conn().execute(
            "SELECT COUNT(*) AS n FROM rota_runs WHERE state = 'ENQUEUED' AND run_after < :end",
            {"end": window.end},
        )
        if rows[0]["n"] == 0:
            return True
        time.sleep(0.2)
    return False


def _records(rows: list[dict[str, Any]]) -> tuple[list[Record], int]:
    """One record per run; the fire time comes from the tick id, checked against run_after."""
    records, mismatch = [], 0
    for row in rows:
        fire = datetime.fromisoformat(row["idempotency_key"].split("@", 1)[1]).timestamp()
        if abs(fire - row["run_after"]) > 1e-3 or fire != round(fire):
            mismatch += 1
        started = row["started_at"]
        records.append(
            Record(
                row["name"],
                round(fire),
                None if started is None else started - row["run_after"],
                max(row["attempt"], 1),
            )
        )
    return records, mismatch


def _keep_if_written(folder: str) -> str | None:
    """The processes' stderr: kept (and named in the result) only if anything was logged."""
    if any(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)):
        return folder
    shutil.rmtree(folder)
    return None


def _batch(args: argparse.Namespace) -> str:
    return "" if args.scheduler_batch is None else f" (batch {args.scheduler_batch})"


def _stages(rows: list[dict[str, Any]], window: Window) -> dict[str, float]:
    """Where the lateness arises. A run's created_at is the `now` of the scheduler pass that
    decided it, so created_at - run_after is how late the scheduler woke; per fire second,
    the first start shows when the first batch of runs became visible, the spread how long
    the rest took (later batches and claims)."""
    wake, per_second = [], defaultdict(list)
    for row in rows:
        if row["started_at"] is None or not window.start <= row["run_after"] < window.end:
            continue
        wake.append(row["created_at"] - row["run_after"])
        per_second[round(row["run_after"])].append(row["started_at"] - row["run_after"])
    if not wake:
        return {}
    first = sorted(min(v) for v in per_second.values())
    spread = sorted(max(v) - min(v) for v in per_second.values())
    wake.sort()
    return {
        "wake_p99_ms": round(1000 * percentile(wake, 99), 1),
        "first_start_p50_ms": round(1000 * percentile(first, 50), 1),
        "first_start_max_ms": round(1000 * first[-1], 1),
        "spread_p50_ms": round(1000 * percentile(spread, 50), 1),
        "spread_max_ms": round(1000 * spread[-1], 1),
    }


def _profile(
    folder: str, db: str, window: Window, **procs: subprocess.Popen[str]
) -> list[subprocess.Popen[bytes]]:
    """py-spy record (sampling, non-blocking) each process over the window, raw stacks."""
    os.makedirs(folder, exist_ok=True)
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    time.sleep(max(0.0, window.start - time.time()))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                "200",
                "--duration",
                str(window.end - window.start),
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                os.path.join(folder, f"rota-{db}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, proc in procs.items()
    ]


if __name__ == "__main__":
    main()
