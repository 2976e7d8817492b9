"""A database blip never fails a run: rota's own database errors (claim, heartbeat,
checkpoint, completion) abandon the attempt, which resumes from its last checkpoint once the
database is back, without spending the run's retries.

The unit-level tests make the store fail on chosen statements with the driver's own
operational error (a restart's "terminating connection", SQLite's "database is locked"),
on both databases. The acceptance test restarts a private PostgreSQL cluster twice under
real worker processes (see private_pg.py and blip_app.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from private_pg import PrivateCluster, private_cluster
from worker_procs import WorkerProcesses as Workers

from rota import App, RunState
from rota.errors import DatabaseError, StoreUnavailable
from rota.model import NewRun
from rota.storage import SqlStore
from rota.storage.dialects import Connection

HERE = Path(__file__).resolve().parent
BLIP_APP = HERE / "blip_app.py"


# -- failing on purpose ----------------------------------------------------------------------


@dataclass
class _Rule:
    sql: str
    left: int
    when: Callable[[Any], bool]


class Blips:
    """Makes rota's store fail like a database blip: the next `times` statements containing
    `sql` (whose parameters satisfy `when`) raise the driver's own operational error, as a
    restarted PostgreSQL or a locked SQLite file does, instead of reaching the database."""

    def __init__(self, store: SqlStore) -> None:
        self.postgres = store.dialect.name == "postgresql"
        self.raised: list[str] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        connect = store.dialect.connect

        def flaky_connect() -> Connection:
            conn = connect()
            conn.raw = _FlakyRaw(conn.raw, self)
            return conn

        store.dialect.connect = flaky_connect  # type: ignore[method-assign]
        store.close()  # every thread reconnects, through flaky_connect

    def fail(self, sql: str, times: int = 1, when: Callable[[Any], bool] | None = None) -> None:
        self._rules.append(_Rule(sql, times, when or (lambda _: True)))

    @property
    def pending(self) -> list[tuple[str, int]]:
        return [(r.sql, r.left) for r in self._rules if r.left]

    def check(self, sql: str, params: Any) -> None:
        with self._lock:
            for rule in self._rules:
                if rule.left and rule.sql in sql and rule.when(params):
                    rule.left -= 1
                    self.raised.append(rule.sql)
                    raise self._error()

    def _error(self) -> Exception:
        if self.postgres:
            return psycopg.errors.AdminShutdown(
                "terminating connection due to administrator command"
            )
        exc = sqlite3.OperationalError("database is locked")
        exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
        exc.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
        return exc


class _FlakyRaw:
    """A driver connection whose statements pass Blips first."""

    def __init__(self, raw: Any, blips: Blips) -> None:
        self._raw = raw
        self._blips = blips

    def execute(self, sql: Any, params: Any = (), *args: Any, **kwargs: Any) -> Any:
        self._blips.check(str(sql), params)
        return self._raw.execute(sql, params, *args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _FlakyCursor(self._raw.cursor(*args, **kwargs), self._blips)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _FlakyCursor:
    def __init__(self, cursor: Any, blips: Blips) -> None:
        self._cursor = cursor
        self._blips = blips

    def executemany(self, sql: Any, rows: Any) -> Any:
        self._blips.check(str(sql), rows)
        return self._cursor.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _step(key: str) -> Callable[[Any], bool]:
    return lambda params: isinstance(params, dict) and params.get("key") == key


# -- the storage layer says what failed --------------------------------------------------------


def test_a_terminated_postgresql_connection_is_store_unavailable_then_reconnects(
    pg_schema_url: str,
) -> None:
    store = SqlStore(pg_schema_url)
    store.migrate()
    try:
        pid = store.conn().execute("SELECT pg_backend_pid() AS pid")[0]["pid"]
        with psycopg.connect(pg_schema_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable, match="administrator command") as info:
            store.count_states()
        assert isinstance(info.value, DatabaseError)  # the API answers these with 503
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert store.count_states() == {}  # the next call reconnects
        # A mistake in SQL is no blip, nor a statement_timeout: a retry meets them again.
        with pytest.raises(psycopg.errors.UndefinedTable):
            store.conn().execute("SELECT nope FROM nowhere")
        store.conn().execute("SET statement_timeout = 1")
        with pytest.raises(psycopg.errors.QueryCanceled):
            store.conn().execute("SELECT pg_sleep(5)")
    finally:
        store.close()


def test_a_locked_sqlite_database_is_store_unavailable_until_the_lock_goes(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = SqlStore(sqlite_url)
    store.migrate()
    store.close()
    store.dialect.busy_timeout_s = 0.01  # type: ignore[attr-defined]  # give up at once
    holder = sqlite3.connect(tmp_path / "rota.db", isolation_level=None)
    run = NewRun("r1", "job", "job", None, "manual", created_at=1.0, run_after=1.0)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="database is locked") as info:
            store.enqueue([run])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        assert store.enqueue([run]) == [("r1", True)]
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            store.conn().execute("SELECT nope FROM nowhere")
    finally:
        holder.close()
        store.close()


# -- runs: an abandoned attempt is not a failure ---------------------------------------------


def test_failed_checkpoint_writes_spend_no_retry_and_rerun_only_the_interrupted_step(
    app: App,
) -> None:
    executions: list[str] = []

    def work(name: str) -> str:
        executions.append(name)
        return name.upper()

    @app.workflow  # retries=0: any failure would be final
    async def flow(ctx: Any) -> list[str]:
        return [await ctx.step(name, work, name) for name in ("s1", "s2", "s3")]

    handle = app.run_now("flow")
    blips = Blips(app.store)
    blips.fail("INSERT INTO rota_steps", times=2, when=_step("s2"))
    blips.fail("SELECT * FROM rota_steps", times=1)  # a resumed attempt's checkpoint load
    app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    run = handle.get()
    assert (run.state, run.failures, run.error) == (RunState.SUCCEEDED, 0, None)
    assert handle.result() == ["S1", "S2", "S3"]
    # s1 completed once and was replayed; s2 ran again each time its checkpoint was lost.
    assert executions == ["s1", "s2", "s2", "s2", "s3"]
    assert run.attempt == 4  # executions, abandoned ones included (see docs/semantics.md)
    assert [(s.key, s.state, s.attempts) for s in app.store.steps(run.id)] == [
        ("s1", "SUCCEEDED", 1),
        ("s2", "SUCCEEDED", 1),
        ("s3", "SUCCEEDED", 1),
    ]


def test_workflow_code_cannot_catch_a_database_blip_as_an_ordinary_failure(app: App) -> None:
    @app.workflow
    async def careful(ctx: Any) -> str:
        try:
            return str(await ctx.step("charge", lambda: "charged"))
        except Exception as exc:  # meant for the step's own failures
            return f"gave up: {type(exc).__name__}"

    handle = app.run_now("careful")
    blips = Blips(app.store)
    blips.fail("INSERT INTO rota_steps", times=1)
    app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    assert handle.result() == "charged"
    assert handle.get().failures == 0


def test_a_database_blip_that_a_job_wrapped_in_its_own_error_is_still_recognised(
    app: App,
) -> None:
    calls: list[int] = []

    @app.job
    def audit_self(ctx: Any) -> str:
        calls.append(ctx.attempt)
        try:
            app.store.get_run(ctx.run_id)
        except Exception as exc:
            raise RuntimeError("could not read my own run") from exc
        return "found"

    handle = app.run_now("audit_self")
    blips = Blips(app.store)
    blips.fail("SELECT * FROM rota_runs WHERE id", times=1)
    app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    run = handle.get()
    assert (run.state, run.failures, run.result) == (RunState.SUCCEEDED, 0, "found")
    assert calls == [1, 2]


def test_worker_loops_log_one_line_back_off_and_resume_on_their_own(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job
    def echo(ctx: Any, n: int) -> int:
        return n

    handles = app.run_many("echo", range(5))
    blips = Blips(app.store)
    blips.fail("SET state = 'RUNNING'", times=3)  # claims
    blips.fail("AS r SET state" if blips.postgres else "SET state = :state", times=3)  # outcomes
    blips.fail("GROUP BY state", times=3)  # the drain's "anything left?" check
    with caplog.at_level(logging.INFO, logger="rota.worker"):
        stats = app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    assert [h.result() for h in handles] == [0, 1, 2, 3, 4]
    assert (stats.succeeded, stats.failed) == (5, 0)
    trouble = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert trouble, "the failures were not reported"
    for record in trouble:  # one plain line each: no traceback for a database blip
        assert "database unavailable" in record.getMessage(), record.getMessage()
        assert record.exc_info is None, record.getMessage()
    resumed = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert resumed, [r.getMessage() for r in caplog.records]


# -- acceptance: PostgreSQL restarted twice under real workers -------------------------------

N_RUNS = 200
N_WORKERS = 2
FIRST_RESTART_AT = 40  # finished runs
SECOND_RESTART_AT = 110
DOWN_S = 5.0  # how long the second, crash-like stop keeps the server down
FINISH_DEADLINE_S = 120.0


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


blip_app = _load(BLIP_APP, "rota_blip_app")


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


def _finished(app: App) -> int | None:
    """Finished runs, or None while the database is down."""
    try:
        counts = app.store.count_states([blip_app.WORKFLOW])
    except (DatabaseError, psycopg.Error):
        return None
    return sum(counts.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED"))


def _wait_until_finished(app: App, workers: Workers, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (_finished(app) or 0) < at_least:
        workers.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {at_least} runs finished in {timeout:g}s\n{workers.tail()}")
        time.sleep(0.02)


@pytest.mark.postgres
def test_two_postgresql_restarts_under_load_fail_no_run_and_rerun_no_completed_step(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    log_url = f"sqlite:///{tmp_path / 'executions.db'}"
    app = blip_app.make_app(cluster.url, log_url)
    log = blip_app.ExecutionLog(log_url)
    log.install()
    env = {
        **os.environ,
        "ROTA_DATABASE_URL": cluster.url,
        blip_app.LOG_ENV: log_url,
        "PYTHONUNBUFFERED": "1",
    }
    workers = Workers(BLIP_APP, env, tmp_path)
    try:
        enqueued = {h.id for h in app.run_many(blip_app.WORKFLOW, range(N_RUNS))}
        for _ in range(N_WORKERS):
            workers.start()

        _wait_until_finished(app, workers, FIRST_RESTART_AT, FINISH_DEADLINE_S)
        cluster.restart_fast()  # sessions terminated by "administrator command"
        _wait_until_finished(app, workers, SECOND_RESTART_AT, FINISH_DEADLINE_S)
        cluster.stop_immediate()  # like a crash; meanwhile: "Connection refused"
        time.sleep(DOWN_S)
        cluster.start()
        _wait_until_finished(app, workers, N_RUNS, FINISH_DEADLINE_S)
        workers.check_alive()
        assert workers.stop() == [0] * N_WORKERS, workers.tail()

        runs = app.runs(names=[blip_app.WORKFLOW], limit=N_RUNS * 2)
        _check_runs_and_checkpoints(app, runs, enqueued, log.executions(), workers)
    finally:
        workers.cleanup()
        log.close()
        app.close()


def _check_runs_and_checkpoints(
    app: App,
    runs: list[Any],
    enqueued: set[str],
    executions: list[tuple[int, str, str, int]],
    workers: Workers,
) -> None:
    assert {r.id for r in runs} == enqueued
    not_ok = {
        r.id: (r.state.value, r.failures, r.error)
        for r in runs
        if r.state != RunState.SUCCEEDED or r.failures
    }
    assert not not_ok, f"{len(not_ok)} runs not SUCCEEDED first time: {not_ok}\n{workers.tail()}"

    recorded: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for execution, run_id, step, pid in executions:
        recorded[run_id, step].append((execution, pid))
    for run in runs:
        checkpoints = {s.key: s for s in app.store.steps(run.id)}
        assert sorted(checkpoints) == sorted(blip_app.STEPS), run.id
        previous = 0  # the checkpointed execution of the step before
        for step in blip_app.STEPS:
            where = f"run {run.id} step {step}"
            chosen = checkpoints[step].result
            assert checkpoints[step].state == "SUCCEEDED", where
            assert run.result[step] == chosen, where  # resumed runs replayed checkpoints
            execs = recorded[run.id, step]
            # The checkpointed execution happened once, in the worker it names ...
            assert [pid for e, pid in execs if e == chosen["execution"]] == [chosen["pid"]], where
            # ... and nothing ran after it: a completed step never ran again;
            assert max(e for e, _ in execs) == chosen["execution"], (where, execs, chosen)
            # no execution began before the previous step's checkpointed one.
            assert min(e for e, _ in execs) > previous, (where, execs, previous)
            previous = chosen["execution"]

    # The restarts did interrupt work: attempts were abandoned and resumed.
    resumed = [r.id for r in runs if r.attempt > 1]
    rerun = [key for key, execs in recorded.items() if len(execs) > 1]
    log_text = workers.text()
    print(f"runs resumed={len(resumed)} steps run again={len(rerun)}")
    assert resumed, "no run lost an attempt to the restarts: the test proved nothing"
    assert "database unavailable" in log_text
