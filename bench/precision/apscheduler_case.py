"""APScheduler 3's half of the schedule-precision benchmark: in-process, memory job store.

    python -m bench.precision.apscheduler_case --schedules 1000 --window 60

A `BackgroundScheduler` (UTC) with N interval jobs (every second, start aligned to a whole
second, coalesce off, misfire_grace_time 30 s, max_instances high) on a thread pool executor.
Each job returns time.time() at its start; APScheduler hands that to EVENT_JOB_EXECUTED
listeners together with the run's nominal `scheduled_run_time`, so lateness is exact. The
scheduler thread's CPU is read from /proc and reported apart from the rest of the process
(the executor threads running the jobs). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from apscheduler import __version__ as aps_version
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .measure import (
    CpuSampler,
    Record,
    Window,
    machine_busy_s,
    process_cpu_s,
    sleep_until,
    summarize,
    thread_cpu_s,
)
from .rota_app import names

EVENT_NAMES = {
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "max_instances",
    EVENT_JOB_ERROR: "error",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    # APScheduler's user guide configures ThreadPoolExecutor(20); its default is 10.
    p.add_argument("--threads", type=int, default=20)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # it warns per missed run
    print(json.dumps(run(args)), flush=True)


def noop() -> float:
    return time.time()


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.time()
    window = Window.after(t0, args.warmup, args.window)
    executed: list[tuple[str, float, float]] = []
    other: Counter[str] = Counter()

    def listen(event: JobEvent) -> None:
        if event.code == EVENT_JOB_EXECUTED:
            nominal = event.scheduled_run_time.timestamp()  # type: ignore[attr-defined]
            executed.append((event.job_id, nominal, event.retval - nominal))  # type: ignore[attr-defined]
        else:
            other[EVENT_NAMES[event.code]] += 1

    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(args.threads)},
        job_defaults={"coalesce": False, "misfire_grace_time": 30, "max_instances": 100},
    )
    first = datetime.fromtimestamp(window.start - args.warmup + 1, UTC)
    for name in names(args.schedules):
        scheduler.add_job(noop, "interval", seconds=1, start_date=first, id=name, name=name)
    scheduler.add_listener(
        listen, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
    )
    scheduler.start()
    thread = scheduler._thread  # the scheduler's own thread (jobs run in the executor's)
    assert isinstance(thread, threading.Thread) and thread.native_id is not None
    sampler = CpuSampler(
        window,
        {
            "process": process_cpu_s,
            "scheduler": lambda: thread_cpu_s(thread.native_id),  # type: ignore[arg-type]
            "machine": lambda: machine_busy_s()[0],
        },
    ).start()
    started_at = time.time()
    sleep_until(window.end + 0.5)
    scheduler.shutdown(wait=True)
    cpu = sampler.result()
    records = [Record(job, round(nominal), late) for job, nominal, late in list(executed)]
    out: dict[str, Any] = {
        "tool": "apscheduler",
        "db": "memory",
        **summarize(records, names(args.schedules), window),
        "scheduler_cpu_pct": cpu.get("scheduler_pct"),
        "worker_cpu_pct": None
        if "process_pct" not in cpu
        else round(cpu["process_pct"] - cpu["scheduler_pct"], 2),
        "process_cpu_pct": cpu.get("process_pct"),
        "machine_cpu_pct": cpu.get("machine_pct"),
        "events": dict(other),
        "started_before_window_s": round(window.start - started_at, 2),
        "config": f"APScheduler {aps_version} BackgroundScheduler, MemoryJobStore, "
        f"ThreadPoolExecutor({args.threads}), coalesce=False, misfire_grace_time=30, "
        "max_instances=100",
    }
    for key in ("cpu_error", "cpu_warning"):
        if key in cpu:
            out[key] = cpu[key]
    return out


if __name__ == "__main__":
    main()
