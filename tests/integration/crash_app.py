"""The app the crash-recovery test runs in real worker processes, which it then SIGKILLs.

`three_steps` runs three durable steps. Each step execution first records itself in
`crash_executions` (its own table, written through its own connection, outside rota), then
sleeps a little so that kills land mid-step, and returns the pid and the execution id. The
test compares those records with rota's checkpoints to prove that a completed step never
runs again and that only steps interrupted by a kill ran more than once. Triggers on
rota_steps (installed by the test, observing only) log every checkpoint write, so that a
checkpoint overwritten by a second execution could not hide.

Run as a script, it is one worker: `ROTA_DATABASE_URL=... python crash_app.py`.
"""

from __future__ import annotations

from side_db import StepExecutions, add_three_steps, run_worker_until_sigterm

from rota import App

WORKFLOW = "three_steps"
STEPS = ("s1", "s2", "s3")
LEASE_S = 1.5
CONCURRENCY = 8
POLL_INTERVAL_S = 0.2
MAX_STEP_SLEEP_S = 0.03

_TABLES = """
CREATE TABLE crash_executions (
    id {serial} PRIMARY KEY,
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    pid INTEGER NOT NULL);
CREATE TABLE crash_checkpoints (
    id {serial} PRIMARY KEY,
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    last_execution BIGINT)"""
# What every write to rota_steps logs: the checkpoint, and the newest execution of that step
# at the moment the checkpoint was written (in the same transaction).
_LOG_CHECKPOINT = """INSERT INTO crash_checkpoints (run_id, step, state, result, last_execution)
    VALUES (NEW.run_id, NEW.step_key, NEW.state, NEW.result,
            (SELECT MAX(id) FROM crash_executions e
             WHERE e.run_id = NEW.run_id AND e.step = NEW.step_key))"""
_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER crash_step_inserted AFTER INSERT ON rota_steps BEGIN {_LOG_CHECKPOINT}; END",
    f"CREATE TRIGGER crash_step_updated AFTER UPDATE ON rota_steps BEGIN {_LOG_CHECKPOINT}; END",
)
_POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION crash_log_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN {_LOG_CHECKPOINT}; RETURN NULL; END $$""",
    """CREATE TRIGGER crash_step_written AFTER INSERT OR UPDATE ON rota_steps
    FOR EACH ROW EXECUTE FUNCTION crash_log_checkpoint()""",
)


class ExecutionLog(StepExecutions):
    """Step executions and checkpoint writes, through one autocommit connection of its own
    (shared by the step threads under a lock, to keep PostgreSQL connections few)."""

    table = "crash_executions"

    def install(self) -> None:
        """Create the log tables, and triggers that log every write to rota's rota_steps."""
        sqlite = self.url.dialect == "sqlite"
        tables = _TABLES.format(serial="INTEGER" if sqlite else "BIGSERIAL").split(";")
        for statement in (*tables, *(_SQLITE_TRIGGERS if sqlite else _POSTGRES_TRIGGERS)):
            self._query(statement)

    def checkpoint_writes(self) -> list[tuple[str, str, str, str | None, int | None]]:
        """Every write to rota_steps as (run_id, step, state, result JSON, last execution id)."""
        rows = self._query(
            "SELECT run_id, step, state, result, last_execution FROM crash_checkpoints ORDER BY id"
        )
        return [
            (r, s, st, res, None if last is None else int(last)) for r, s, st, res, last in rows
        ]


def make_app(database_url: str | None = None) -> App:
    app = App(database_url)
    log = ExecutionLog(app.database_url.original)
    add_three_steps(app, log, name=WORKFLOW, steps=STEPS, sleep_s=(0, MAX_STEP_SLEEP_S))
    return app


def main() -> None:
    run_worker_until_sigterm(
        make_app(), concurrency=CONCURRENCY, lease_s=LEASE_S, poll_s=POLL_INTERVAL_S
    )


if __name__ == "__main__":
    main()
