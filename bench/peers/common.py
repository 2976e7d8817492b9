"""Shared helpers for the peer benchmarks: database reset, timing, counting."""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT_S = 600.0  # a whole run must finish within this
_deadline = time.monotonic() + DEFAULT_TIMEOUT_S

# A freshly created database has no planner statistics, so right after a bulk
# enqueue the planner may pick a plan that scans every queued row per dequeue
# (seen with procrastinate: ~4 ms per fetch at 5000 rows, quadratic overall).
# Autovacuum would fix this only after its first naptime (1 min). We therefore
# run a plain ANALYZE between enqueue and drain (untimed), for every peer alike;
# rota's half should do the same. ``run_peer --no-analyze`` turns it off.
ANALYZE_AFTER_ENQUEUE = True


def is_sqlite(dsn: str) -> bool:
    return dsn.startswith("sqlite")


def reset_database(dsn: str) -> None:
    """Drop and recreate the database named in ``dsn`` (PostgreSQL) or delete
    the file (SQLite), so each run starts from an empty schema."""
    if is_sqlite(dsn):
        path = dsn.split(":///", 1)[1]
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    import psycopg

    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise ValueError(f"refusing to reset database {name!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        ident = psycopg.sql.Identifier(name)
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident))


def analyze(dsn: str) -> bool:
    """ANALYZE the whole database (see ANALYZE_AFTER_ENQUEUE); return whether it ran."""
    if not ANALYZE_AFTER_ENQUEUE or is_sqlite(dsn):
        return False
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return True


class Counter:
    """Thread-safe record of which job ids ran (and how many times in total)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.seen: set[int] = set()

    def hit(self, job_id: int) -> None:
        with self._lock:
            self.calls += 1
            self.seen.add(job_id)

    def check(self, jobs: int) -> None:
        """Raise unless every job 0..jobs-1 ran exactly once."""
        if self.calls != jobs or self.seen != set(range(jobs)):
            raise RuntimeError(
                f"expected {jobs} jobs to run once each; got {self.calls} calls, "
                f"{len(self.seen)} distinct"
            )


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def start_clock(timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Start the run's time budget (run_peer calls this)."""
    global _deadline
    _deadline = time.monotonic() + timeout


def remaining() -> float:
    """Seconds left in the run's budget; TimeoutError once it is spent."""
    left = _deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("benchmark run exceeded its time budget")
    return left


def wait_until(predicate, interval: float = 0.005) -> float:
    """Poll ``predicate`` until true; return the perf_counter() when it became
    true. TimeoutError when the run's budget is spent."""
    while not predicate():
        remaining()
        time.sleep(interval)
    return time.perf_counter()
