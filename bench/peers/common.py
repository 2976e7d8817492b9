"""Shared helpers for the peer benchmarks: database reset, timing, counting."""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TIMEOUT_S = 600.0  # every phase of a run must finish within this


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


def wait_until(predicate, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.005) -> float:
    """Poll ``predicate`` until true; return the perf_counter() when it became
    true. Raise TimeoutError after ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"condition not reached within {timeout}s")
        time.sleep(interval)
    return time.perf_counter()
