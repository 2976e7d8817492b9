"""Soak and scale: rota on PostgreSQL for minutes at a fixed offered load, then the drain
throughput of 1, 2 and 4 worker processes and what limits it.

    make soak                                  # SOAK_SECONDS=600, then the scale phase
    .venv/bin/python -m bench.soak --seconds 120 --backlog 2000 --out soak.json

Both phases run on a private PostgreSQL cluster (tests/integration/private_pg.py) with
fsync, full-page writes and WAL I/O timing turned on, so that its WAL figures are those of
a real server and nothing else on the machine writes to it; the processes are managed with
tests/chaos/processes.py.

Soak: 4 `rota worker` and 2 `rota scheduler` processes serve bench/soak_app.py while an
enqueuer process submits --rate runs a second (three no-op jobs for each three-step
workflow), and the schedulers add `soak_tick` every second. Every --sample seconds: queue lag
(age of the oldest due ENQUEUED run), queue depth, RSS of each rota process, the database's
connection count, and the claim latency (run_after to started_at) p50/p99 of the runs started
in the window. Verdicts (bench/soak_analysis.py), after --warmup seconds: lag and depth
bounded, RSS flat, connections flat.

Scale: a backlog of --backlog no-op jobs in a fresh database, drained by 1, 2 and 4 worker
processes; per drain the CPU of the workers and of their PostgreSQL backends (from /proc),
the WAL written and flushed (pg_stat_wal), and what active backends waited on
(pg_stat_activity wait events, pg_locks not granted) sampled twice a second. Then one more
1-worker drain under cProfile (bench/soak_app.py's SOAK_PROFILE) for the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
for helper_dir in ("tests/chaos", "tests/integration"):
    if str(ROOT / helper_dir) not in sys.path:
        sys.path.append(str(ROOT / helper_dir))

from bench.harness import machine, table  # noqa: E402
from bench.soak_analysis import Trend, after_warmup, percentile, trend  # noqa: E402
from private_pg import PrivateCluster, start_cluster  # noqa: E402
from processes import RotaProcess, rota_env  # noqa: E402

APP = "soak_app:app"
BENCH = Path(__file__).resolve().parent
STARTUP_S = 180.0  # a loaded 2-core machine takes seconds to import rota in each process
FLOW_EVERY = 4  # one run in four is a three-step workflow
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
WORKER_ARGS = ["--concurrency", "16", "--poll", "0.2", "--grace", "5"]
# The verdicts' tolerances: lag may wobble by half its level plus a second, RSS by 3 % plus
# 2 MiB, connections by one.
LAG_TOLERANCE = (0.5, 1.0)
RSS_TOLERANCE = (0.03, 2.0)
CONN_TOLERANCE = (0.0, 1.0)


# -- /proc --------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# -- the database -------------------------------------------------------------------------


def configure(cluster: PrivateCluster) -> None:
    """A private cluster with a real server's durability, and WAL I/O timed."""
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        for setting, value in (
            ("fsync", "on"),
            ("full_page_writes", "on"),
            ("track_wal_io_timing", "on"),
            ("max_connections", "200"),
        ):
            conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
    cluster.restart_fast()


def fresh_database(cluster: PrivateCluster, name: str) -> str:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute("CHECKPOINT")
    return cluster.url.rpartition("/")[0] + "/" + name


def wal_stats(conn: psycopg.Connection[Any]) -> dict[str, float]:
    row = conn.execute(
        "SELECT wal_records, wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time,"
        " wal_buffers_full FROM pg_stat_wal"
    ).fetchone()
    assert row is not None
    keys = ("records", "bytes", "writes", "syncs", "write_ms", "sync_ms", "buffers_full")
    return {k: float(v) for k, v in zip(keys, row, strict=True)}


def backend_pids(conn: psycopg.Connection[Any], database: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchall()
    return [int(pid) for (pid,) in rows]


# -- processes ----------------------------------------------------------------------------


def rota_process(
    name: str, args: list[str], url: str, log_dir: Path, extra_env: dict[str, str] | None = None
) -> RotaProcess:
    env = rota_env(url, {"PYTHONPATH": str(BENCH), **(extra_env or {})})
    banner = f"rota {args[0]} "
    return RotaProcess(name, args, env, log_dir / f"{name}.log", banner, app=APP, cwd=BENCH)


def start_all(processes: list[RotaProcess]) -> None:
    """Start them and wait until every one is up (raising after STARTUP_S)."""
    for process in processes:
        process.start()
    deadline = time.monotonic() + STARTUP_S
    while not all(p.ready for p in processes):
        dead = [p.name for p in processes if not p.alive]
        if dead or time.monotonic() > deadline:
            late = [p.name for p in processes if not p.ready]
            raise RuntimeError(f"not up: {late} (exited: {dead}); see their logs")
        time.sleep(0.2)


def enqueuer(url: str, *argv: str) -> subprocess.Popen[bytes]:
    """This module's own `enqueue` or `backlog` command, in a process of its own."""
    env = {**os.environ, "ROTA_DATABASE_URL": url}
    command = [sys.executable, "-m", "bench.soak", *argv]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def enqueue_command(rate: float, seconds: float) -> None:
    """Submit `rate` runs a second for `seconds`, paced in tenths of a second."""
    from bench.soak_app import app

    sent = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        owed = int(rate * elapsed) - sent
        numbers = range(sent, sent + owed)
        flows = [n for n in numbers if n % FLOW_EVERY == FLOW_EVERY - 1]
        noops = [n for n in numbers if n % FLOW_EVERY != FLOW_EVERY - 1]
        if noops:
            app.run_many("soak_noop", noops)
        if flows:
            app.run_many("soak_flow", flows)
        sent += owed
        time.sleep(0.1)
    app.close()
    print(f"enqueuer: {sent} runs in {time.monotonic() - start:.0f}s", file=sys.stderr)


def backlog_command(count: int, delay: float) -> None:
    """Enqueue `count` no-op jobs in chunks of 1000, all due `delay` seconds from now."""
    from bench.soak_app import app

    start = time.monotonic()
    for first in range(0, count, 1000):
        left = max(0.0, delay - (time.monotonic() - start))
        app.run_many("soak_noop", range(first, min(first + 1000, count)), delay=left)
    app.close()


# -- soak ---------------------------------------------------------------------------------


class Sampler:
    """One sample of the queue, the processes and the connections."""

    def __init__(self, url: str, database: str, processes: list[RotaProcess]) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.database = database
        self.processes = processes
        self.last = time.time()

    def sample(self) -> dict[str, Any]:
        now = time.time()
        oldest, depth = self._one(
            "SELECT min(run_after), count(*) FROM rota_runs"
            " WHERE state = 'ENQUEUED' AND run_after <= %s",
            (now,),
        )
        latencies = [
            float(v)
            for (v,) in self.conn.execute(
                "SELECT started_at - run_after FROM rota_runs"
                " WHERE started_at > %s AND started_at <= %s",
                (self.last, now),
            ).fetchall()
        ]
        (connections,) = self._one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        )
        states = dict(
            self.conn.execute("SELECT state, count(*) FROM rota_runs GROUP BY state").fetchall()
        )
        self.last = now
        return {
            "at": now,
            "lag_s": now - float(oldest) if oldest is not None else 0.0,
            "depth": int(depth),
            "claims": len(latencies),
            "claim_p50_ms": percentile(latencies, 0.5) * 1000,
            "claim_p99_ms": percentile(latencies, 0.99) * 1000,
            "connections": int(connections),
            "rss_mib": {p.name: rss_mib(p.proc.pid) for p in self.processes if p.proc},
            "alive": [p.name for p in self.processes if p.alive],
            "states": {str(k): int(v) for k, v in states.items()},
        }

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)


def run_soak(cluster: PrivateCluster, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    database = "rota_soak"
    url = fresh_database(cluster, database)
    migrate = enqueuer(url, "backlog", "--count", "0")
    migrate.wait()
    processes = [
        rota_process(f"worker-{i}", ["worker", *WORKER_ARGS], url, log_dir) for i in range(4)
    ] + [
        rota_process(f"scheduler-{i}", ["scheduler", "--max-sleep", "0.5"], url, log_dir)
        for i in range(2)
    ]
    samples: list[dict[str, Any]] = []
    try:
        start_all(processes)
        print(f"soak: {len(processes)} processes up; {args.seconds:g}s at {args.rate:g} runs/s")
        load = enqueuer(url, "enqueue", "--rate", str(args.rate), "--seconds", str(args.seconds))
        sampler = Sampler(url, database, processes)
        started = time.monotonic()
        while load.poll() is None:
            time.sleep(args.sample - (time.monotonic() - started) % args.sample)
            samples.append(sampler.sample())
            print("soak: " + _sample_line(samples[-1], samples[0]["at"]), flush=True)
        if load.returncode != 0:
            raise RuntimeError(f"the enqueuer exited {load.returncode}")
        time.sleep(args.sample)
        final = sampler.sample()
        sampler.conn.close()
    finally:
        for process in processes:
            process.stop()
            process.close()
    return {"samples": samples, "final": final, "verdicts": soak_verdicts(samples, args.warmup)}


def _sample_line(s: dict[str, Any], t0: float) -> str:
    rss = " ".join(f"{v:.0f}" for v in s["rss_mib"].values())
    return (
        f"t={s['at'] - t0:4.0f}s lag={s['lag_s']:.2f}s depth={s['depth']} claims={s['claims']}"
        f" p50={s['claim_p50_ms']:.0f}ms p99={s['claim_p99_ms']:.0f}ms"
        f" conns={s['connections']} rss={rss} MiB"
    )


def soak_verdicts(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Lag, depth, each process's RSS and connections, after the warm-up."""
    t0 = samples[0]["at"]
    times = [s["at"] - t0 for s in samples]

    def series(name: str, values: list[float], tolerance: tuple[float, float]) -> Trend:
        kept_t, kept_v = after_warmup(times, values, warmup_s)
        return trend(name, kept_t, kept_v, relative=tolerance[0], absolute=tolerance[1])

    trends = {
        "lag_s": series("queue lag", [s["lag_s"] for s in samples], LAG_TOLERANCE),
        "depth": series(
            "queue depth", [float(s["depth"]) for s in samples], (LAG_TOLERANCE[0], 20.0)
        ),
        "connections": series(
            "connections", [float(s["connections"]) for s in samples], CONN_TOLERANCE
        ),
    }
    for name in samples[0]["rss_mib"]:
        values = [s["rss_mib"][name] for s in samples]
        trends[f"rss:{name}"] = series(f"RSS {name}", values, RSS_TOLERANCE)
    return {key: vars(value) for key, value in trends.items()}


# -- scale --------------------------------------------------------------------------------


def drain(
    cluster: PrivateCluster,
    workers: int,
    args: argparse.Namespace,
    log_dir: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """A backlog of no-op jobs drained by `workers` processes, and what they waited on."""
    database = f"rota_scale_{workers}{'_profiled' if profile else ''}"
    url = fresh_database(cluster, database)
    enqueuer(url, "backlog", "--count", "0").wait()  # migrated before the workers start
    extra = {"SOAK_PROFILE": str(profile)} if profile else {}
    tag = "profiled-" if profile else ""
    processes = [
        rota_process(
            f"{tag}scale{workers}-worker-{i}", ["worker", *WORKER_ARGS], url, log_dir, extra
        )
        for i in range(workers)
    ]
    waits: Counter[str] = Counter()
    lock_waits = samples = 0
    try:
        start_all(processes)
        conn = psycopg.connect(url, autocommit=True)
        # Due once it is all in: no worker starts on a half-written backlog.
        delay = str(5 + args.backlog / 2000)
        if enqueuer(url, "backlog", "--count", str(args.backlog), "--delay", delay).wait() != 0:
            raise RuntimeError("the backlog enqueuer failed")
        wal_before = wal_stats(conn)  # the enqueuer's backend has exited: its WAL is counted
        (due,) = _one(conn, "SELECT min(run_after) FROM rota_runs")
        pids = {p.name: p.proc.pid for p in processes if p.proc}
        cpu_before = {name: cpu_s(pid) or 0.0 for name, pid in pids.items()}
        backends = {pid: cpu_s(pid) for pid in backend_pids(conn, database)}
        time.sleep(max(0.0, float(due) - time.time()))
        busy_before = machine_busy()
        while True:
            left = conn.execute(
                "SELECT count(*) FROM rota_runs WHERE state NOT IN (%s, %s, %s)", FINAL
            ).fetchone()
            if left is not None and left[0] == 0:
                break
            for wait_type, event in conn.execute(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE datname = %s"
                " AND state = 'active' AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall():
                waits[f"{wait_type}:{event}" if wait_type else "CPU (no wait event)"] += 1
            ungranted = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
            lock_waits += int(ungranted[0]) if ungranted else 0
            samples += 1
            time.sleep(0.2)
        busy_after = machine_busy()
        worker_cpu = sum((cpu_s(pid) or 0.0) - cpu_before[n] for n, pid in pids.items())
        backend_cpu = sum(
            (cpu_s(pid) or before) - before
            for pid, before in backends.items()
            if before is not None
        )
        last, done, spread = _one(
            conn,
            "SELECT max(finished_at), count(*), max(started_at) - min(started_at) FROM rota_runs"
            " WHERE state = 'SUCCEEDED'",
        )
    finally:
        for process in processes:
            process.stop()
            process.close()
    # Backends report their WAL counters at most once a second, and at exit: read them after
    # the workers' connections are closed.
    time.sleep(1.0)
    wal = {k: v - wal_before[k] for k, v in wal_stats(conn).items()}
    conn.close()
    wall = float(last) - float(due)
    jobs = int(done)
    return {
        "workers": workers,
        "jobs": jobs,
        "drain_s": round(wall, 3),
        "started_spread_s": round(float(spread), 3),
        "jobs_per_s": round(jobs / wall, 1),
        "worker_cpu_us_per_job": round(worker_cpu / jobs * 1e6),
        "backend_cpu_us_per_job": round(backend_cpu / jobs * 1e6),
        "machine_busy": round(
            (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]), 2
        ),
        "wal_bytes_per_job": round(wal["bytes"] / max(1, jobs)),
        "wal_syncs_per_1000_jobs": round(wal["syncs"] / jobs * 1000, 1),
        "wal_sync_ms": round(wal["sync_ms"]),
        "wal_sync_share": round(wal["sync_ms"] / 1000 / wall, 3),
        "wait_samples": samples,
        "waits": dict(waits.most_common(8)),
        "ungranted_lock_samples": lock_waits,
    }


def _one(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def top_functions(path: Path, count: int = 12) -> list[dict[str, Any]]:
    """The profile's functions with the most own time."""
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, func), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "calls": calls,
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
            }
        )
    return sorted(rows, key=lambda r: -r["own_s"])[:count]


def run_scale(cluster: PrivateCluster, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """--rounds of 1, 2 and 4 workers, interleaved so that machine noise hits each alike."""
    drains = []
    for round_no in range(1, args.rounds + 1):
        for workers in (1, 2, 4):
            print(f"scale: round {round_no}: {args.backlog} jobs, {workers} worker process(es)")
            drains.append(drain(cluster, workers, args, log_dir))
            print("scale: " + json.dumps(drains[-1]), flush=True)
    profile_path = log_dir / "worker.prof"
    print("scale: a 1-worker drain under cProfile")
    profiled = drain(cluster, 1, args, log_dir, profile=profile_path)
    top = top_functions(profile_path) if profile_path.exists() else []
    return {"drains": drains, "profiled_drain": profiled, "profile_top": top}


def scale_summary(scale: dict[str, Any]) -> str:
    """Median (min-max) jobs/s per worker count."""
    rows = []
    for workers in sorted({d["workers"] for d in scale["drains"]}):
        rates = [d["jobs_per_s"] for d in scale["drains"] if d["workers"] == workers]
        middle = f"{statistics.median(rates):,.0f}"
        rows.append([workers, len(rates), middle, f"{min(rates):,.0f}-{max(rates):,.0f}"])
    return table(["workers", "drains", "median jobs/s", "min-max"], rows)


# -- report -------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    lines = [f"Machine: {result['machine']}; load before: {result['load_before']}"]
    soak = result.get("soak")
    if soak:
        samples = soak["samples"]
        lat50 = [s["claim_p50_ms"] for s in samples if s["claims"]]
        lat99 = [s["claim_p99_ms"] for s in samples if s["claims"]]
        lines.append(
            f"\nSoak: {result['args']['seconds']:g}s at {result['args']['rate']:g} runs/s,"
            f" {len(samples)} samples; final states {soak['final']['states']}"
        )
        lines.append(
            f"claim latency per window: p50 median {statistics.median(lat50):.0f} ms"
            f" (max {max(lat50):.0f}), p99 median {statistics.median(lat99):.0f} ms"
            f" (max {max(lat99):.0f})"
        )
        rows = [
            [
                v["name"],
                f"{v['first']:.2f}",
                f"{v['last']:.2f}",
                f"{v['slope_per_min']:+.3f}",
                "ok" if v["ok"] else "RISING",
            ]
            for v in soak["verdicts"].values()
        ]
        lines.append(table(["series", "first third", "last third", "slope/min", "verdict"], rows))
    scale = result.get("scale")
    if scale:
        rows = [
            [
                d["workers"],
                d["jobs"],
                d["jobs_per_s"],
                d["worker_cpu_us_per_job"],
                d["backend_cpu_us_per_job"],
                d["machine_busy"],
                d["wal_bytes_per_job"],
                f"{d['wal_sync_share']:.1%}",
                d["ungranted_lock_samples"],
                ", ".join(f"{k} {v}" for k, v in list(d["waits"].items())[:3]),
            ]
            for d in scale["drains"]
        ]
        headers = ["workers", "jobs", "jobs/s", "worker CPU us/job", "backend CPU us/job"]
        headers += ["machine busy", "WAL B/job", "WAL sync time", "lock waits", "top waits"]
        lines += ["\nScale (every drain):", table(headers, rows), "", scale_summary(scale)]
        lines.append("\nProfile (1 worker, main thread, own CPU time):")
        lines += [
            f"  {f['own_s']:8.3f}s own {f['cumulative_s']:8.3f}s cum {f['calls']:8} calls"
            f"  {f['function']}"
            for f in scale["profile_top"]
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    enqueue = sub.add_parser("enqueue", help="(internal) the soak's offered load")
    enqueue.add_argument("--rate", type=float, required=True)
    enqueue.add_argument("--seconds", type=float, required=True)
    backlog = sub.add_parser("backlog", help="(internal) the scale phase's backlog")
    backlog.add_argument("--count", type=int, required=True)
    backlog.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    p.add_argument("--rate", type=float, default=20.0, help="offered runs a second")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out of verdicts")
    p.add_argument("--backlog", type=int, default=30000, help="no-op jobs per scale drain")
    p.add_argument("--rounds", type=int, default=3, help="scale drains per worker count")
    p.add_argument("--phases", default="soak,scale")
    p.add_argument("--out", type=Path, default=Path("soak-result.json"))
    args = p.parse_args()
    if args.command == "enqueue":
        return enqueue_command(args.rate, args.seconds)
    if args.command == "backlog":
        return backlog_command(args.count, args.delay)
    phases = set(args.phases.split(","))
    log_dir = Path(tempfile.mkdtemp(prefix="rota-soak-"))
    result: dict[str, Any] = {
        "machine": machine(),
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "logs": str(log_dir),
    }
    cluster = start_cluster()
    try:
        configure(cluster)
        if "soak" in phases:
            result["soak"] = run_soak(cluster, args, log_dir)
        if "scale" in phases:
            result["scale"] = run_scale(cluster, args, log_dir)
    finally:
        cluster.destroy()
    result["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"\nwritten {args.out}; process logs in {log_dir}")


if __name__ == "__main__":
    main()
