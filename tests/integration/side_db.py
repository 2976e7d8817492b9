"""A connection of the tests' own (not rota's) to the database under test, for logs that
worker subprocesses write: one autocommit connection per process, shared under a lock so
that many threads keep PostgreSQL connections few."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from typing import Any

import psycopg

from rota import RunContext, current_step
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

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class StepExecutions(SideDb):
    """Every execution of a durable step as (id, run_id, step, pid), in the order they began,
    in the table `table` (which the subclass's install() creates)."""

    table: str

    def record(self, run_id: str, step: str, pid: int) -> int:
        [(execution,)] = self._query(
            f"INSERT INTO {self.table} (run_id, step, pid) VALUES (%s, %s, %s) RETURNING id",
            (run_id, step, pid),
        )
        return int(execution)

    def executions(self) -> list[tuple[int, str, str, int]]:
        rows = self._query(f"SELECT id, run_id, step, pid FROM {self.table} ORDER BY id")
        return [(int(i), r, s, int(p)) for i, r, s, p in rows]


def add_three_steps(
    app: Any,
    log: StepExecutions,
    *,
    name: str,
    steps: tuple[str, ...],
    sleep_s: tuple[float, float],
) -> None:
    """Register workflow `name`: durable steps that each record their execution in `log`,
    sleep a random while within `sleep_s` (so that kills and restarts land mid-step), and
    return the pid and the execution id."""

    def execute_step() -> dict[str, int]:
        # A sync step: rota runs it in a worker thread, with current_step() set.
        info = current_step()
        pid = os.getpid()
        execution = log.record(info.run_id, info.key, pid)
        time.sleep(random.uniform(*sleep_s))
        return {"pid": pid, "execution": execution}

    @app.workflow(name=name)  # retries=0: a failure of the workflow is final
    async def three_steps(ctx: RunContext, payload: Any) -> dict[str, Any]:
        results = {step: await ctx.step(step, execute_step) for step in steps}
        return {"payload": payload, **results}


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
        # The crash tests wait for this line before a graceful stop: a SIGTERM that arrives
        # while the process is still importing would kill it (-15) instead of stopping it.
        logging.getLogger("crash-worker").info("worker %d ready", os.getpid())
        stats = await worker.run()
        logging.getLogger("crash-worker").info("worker %d stopped: %s", os.getpid(), stats)

    try:
        asyncio.run(work())
    finally:
        app.close()
