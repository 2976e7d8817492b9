"""The app the database-blip test runs in real worker processes while it restarts their
PostgreSQL server under them.

`three_steps` runs three durable steps. Each step execution first records itself in an
execution log kept OUTSIDE the database being restarted (a SQLite file: its autoincrement ids
order the executions of all processes), sleeps a few milliseconds so that restarts land
mid-step, and returns the pid and the execution id. The test compares those records with
rota's checkpoints to prove that a completed step never ran again.

Run as a script, it is one worker:
`ROTA_DATABASE_URL=... ROTA_BLIP_LOG=sqlite:///... python blip_app.py`.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from side_db import SideDb, run_worker_until_sigterm

from rota import App, RunContext, current_step

WORKFLOW = "three_steps"
STEPS = ("s1", "s2", "s3")
LEASE_S = 2.0
CONCURRENCY = 8
POLL_INTERVAL_S = 0.2
STEP_SLEEP_S = (0.002, 0.02)
LOG_ENV = "ROTA_BLIP_LOG"


class ExecutionLog(SideDb):
    """Every step execution as (id, run_id, step, pid), in the order they began."""

    def install(self) -> None:
        self._query(
            """CREATE TABLE blip_executions (id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL, step TEXT NOT NULL, pid INTEGER NOT NULL)"""
        )

    def record(self, run_id: str, step: str, pid: int) -> int:
        [(execution,)] = self._query(
            "INSERT INTO blip_executions (run_id, step, pid) VALUES (%s, %s, %s) RETURNING id",
            (run_id, step, pid),
        )
        return int(execution)

    def executions(self) -> list[tuple[int, str, str, int]]:
        rows = self._query("SELECT id, run_id, step, pid FROM blip_executions ORDER BY id")
        return [(int(i), r, s, int(p)) for i, r, s, p in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def make_app(database_url: str | None = None, log_url: str | None = None) -> App:
    app = App(database_url)
    log = ExecutionLog(log_url or os.environ[LOG_ENV])

    def execute_step() -> dict[str, int]:
        info = current_step()
        pid = os.getpid()
        execution = log.record(info.run_id, info.key, pid)
        time.sleep(random.uniform(*STEP_SLEEP_S))
        return {"pid": pid, "execution": execution}

    @app.workflow(name=WORKFLOW)  # retries=0: a failure of the workflow is final
    async def three_steps(ctx: RunContext, payload: Any) -> dict[str, Any]:
        results = {name: await ctx.step(name, execute_step) for name in STEPS}
        return {"payload": payload, **results}

    return app


def main() -> None:
    run_worker_until_sigterm(
        make_app(), concurrency=CONCURRENCY, lease_s=LEASE_S, poll_s=POLL_INTERVAL_S
    )


if __name__ == "__main__":
    main()
