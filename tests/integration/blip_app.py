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

from side_db import StepExecutions, add_three_steps, run_worker_until_sigterm

from rota import App

WORKFLOW = "three_steps"
STEPS = ("s1", "s2", "s3")
LEASE_S = 2.0
CONCURRENCY = 8
POLL_INTERVAL_S = 0.2
STEP_SLEEP_S = (0.002, 0.02)
LOG_ENV = "ROTA_BLIP_LOG"


class ExecutionLog(StepExecutions):
    """Every step execution as (id, run_id, step, pid), in the order they began."""

    table = "blip_executions"

    def install(self) -> None:
        self._query(
            """CREATE TABLE blip_executions (id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL, step TEXT NOT NULL, pid INTEGER NOT NULL)"""
        )


def make_app(database_url: str | None = None, log_url: str | None = None) -> App:
    app = App(database_url)
    log = ExecutionLog(log_url or os.environ[LOG_ENV])
    add_three_steps(app, log, name=WORKFLOW, steps=STEPS, sleep_s=STEP_SLEEP_S)
    return app


def main() -> None:
    run_worker_until_sigterm(
        make_app(), concurrency=CONCURRENCY, lease_s=LEASE_S, poll_s=POLL_INTERVAL_S
    )


if __name__ == "__main__":
    main()
