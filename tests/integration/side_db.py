"""A connection of the tests' own (not rota's) to the database under test, for logs that
worker subprocesses write: one autocommit connection per process, shared under a lock so
that many threads keep PostgreSQL connections few."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import psycopg

from rota.storage.urls import parse


class SideDb:
    def __init__(self, database_url: str) -> None:
        self.url = parse(database_url)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL written with %s placeholders on either database."""
        with self._lock:
            if self._conn is None:
                if self.url.dialect == "sqlite":
                    self._conn = sqlite3.connect(
                        self.url.target, isolation_level=None, timeout=30, check_same_thread=False
                    )
                else:
                    self._conn = psycopg.connect(
                        self.url.target, autocommit=True, connect_timeout=10
                    )
            if self.url.dialect == "sqlite":
                sql = sql.replace("%s", "?")
            cursor = self._conn.execute(sql, params) if params else self._conn.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []


def run_worker_until_sigterm(app: Any, *, concurrency: int, lease_s: float, poll_s: float) -> None:
    """The body of a worker subprocess in the crash tests: work until SIGTERM, then log."""
    import asyncio
    import logging
    import os
    import signal

    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s"
    )

    async def work() -> None:
        worker = app.worker(concurrency=concurrency, lease_s=lease_s, poll_interval_s=poll_s)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        stats = await worker.run()
        logging.getLogger("crash-worker").info("worker %d stopped: %s", os.getpid(), stats)

    try:
        asyncio.run(work())
    finally:
        app.close()
