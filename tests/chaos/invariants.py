"""The invariants a chaos run must keep, checked once the faults have stopped and the system
has settled. Each check reads the database directly (not through rota's API) and returns
the violations it found, as lines naming what broke; an empty list is a pass.

They are system-wide, in the style of DBOS's and Jepsen's checks: they do not know which
fault hit which run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import chaos_app
import psycopg

RETRY_S = 60.0
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
# Effects each run kind applies once it has succeeded: one per step or tool call.
EFFECTS = {"chaos_flow": 3, "chaos_approval": 2, chaos_app.AGENT: 2}


class Db:
    """Direct reads (and the suite's few writes) on one database, SQLite or PostgreSQL, with
    %s placeholders; one autocommit connection, reopened after a failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = not url.startswith("postgresql")
        self._conn: Any = None
        self._lock = threading.Lock()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run `sql`, retried for a while if the database is away (restarted by a fault)."""
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                return self._query(sql, params)
            except (psycopg.OperationalError, sqlite3.OperationalError) as exc:
                busy = "locked" in str(exc) or not isinstance(exc, sqlite3.Error)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = (
                        sqlite3.connect(self.url, isolation_level=None, timeout=30)
                        if self.sqlite
                        else psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    )
                text = sql.replace("%s", "?") if self.sqlite else sql
                cursor = self._conn.execute(text, params)
                return list(cursor.fetchall()) if cursor.description else []
            except (psycopg.OperationalError, sqlite3.OperationalError):
                self._close()
                raise

    def _close(self) -> None:
        if self._conn is not None:
            # a broken connection may fail to close; it is dropped anyway
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()


# A trigger on rota_steps logs every checkpoint write with the lease it was written under and
# the run's lease at that moment: a write under an older lease is a fenced-out worker's.
CHECKPOINT_LOG = """CREATE TABLE chaos_checkpoints (run_id TEXT NOT NULL, step TEXT NOT NULL,
    state TEXT NOT NULL, token INTEGER, run_token INTEGER)"""
_LOG_ROW = """INSERT INTO chaos_checkpoints (run_id, step, state, token, run_token)
    VALUES (NEW.run_id, NEW.step_key, NEW.state, NEW.lease_token,
            (SELECT lease_token FROM rota_runs WHERE id = NEW.run_id))"""
TRIGGERS = {
    "sqlite": (
        f"CREATE TRIGGER chaos_step_in AFTER INSERT ON rota_steps BEGIN {_LOG_ROW}; END",
        f"CREATE TRIGGER chaos_step_up AFTER UPDATE ON rota_steps BEGIN {_LOG_ROW}; END",
    ),
    "postgresql": (
        f"""CREATE FUNCTION chaos_log_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN {_LOG_ROW}; RETURN NULL; END $$""",
        """CREATE TRIGGER chaos_step_written AFTER INSERT OR UPDATE ON rota_steps
        FOR EACH ROW EXECUTE FUNCTION chaos_log_checkpoint()""",
    ),
}


def install_checkpoint_log(rota: Db) -> None:
    rota.query(CHECKPOINT_LOG)
    for statement in TRIGGERS["sqlite" if rota.sqlite else "postgresql"]:
        rota.query(statement)


@dataclass
class Expected:
    """What the workload submitted: runs by (job, idempotency key), and the webhook
    deliveries the server accepted (answered 2xx)."""

    runs: dict[tuple[str, str], str] = field(default_factory=dict)
    webhooks: set[str] = field(default_factory=set)
    secrets: tuple[str, ...] = ()


@dataclass
class Findings:
    """The figures of a chaos run and the violations of its invariants."""

    counts: dict[str, int] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, invariant: str, problems: Iterable[str]) -> None:
        found = list(problems)
        self.counts[invariant] = len(found)
        if found:
            self.violations[invariant].extend(found)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def summary(self, limit: int = 8) -> str:
        lines = [f"{name}: {count}" for name, count in self.counts.items()]
        for name, problems in self.violations.items():
            lines.append(f"VIOLATED {name} ({len(problems)}):")
            lines.extend(f"  {p}" for p in problems[:limit])
        return "\n".join(lines)


def check_all(rota: Db, side: Db, expected: Expected, logs: dict[str, str]) -> Findings:
    """Every invariant; `logs` maps each process to its whole output."""
    findings = Findings()
    runs = _runs(rota)
    findings.add("runs lost", _lost(runs, expected))
    findings.add("runs stuck or failed", _unfinished(runs))
    findings.add("completed steps re-run", _steps_rerun(rota, side))
    findings.add("checkpoints written under a lost lease", _stale_checkpoints(rota))
    findings.add("duplicated side effects", _duplicated_effects(runs, side))
    findings.add("ticks duplicated or skipped", _ticks(rota))
    findings.add("webhooks not stored exactly once", _webhooks(rota, runs, expected))
    findings.add("budgets overspent", _budgets(rota, runs))
    findings.add("secrets leaked", _secrets(rota, expected.secrets, logs))
    findings.counts["runs"] = len(runs)
    findings.counts["runs succeeded"] = sum(1 for r in runs.values() if r["state"] == "SUCCEEDED")
    return findings


def _runs(rota: Db) -> dict[str, dict[str, Any]]:
    rows = rota.query(
        "SELECT id, name, state, idempotency_key, trigger, trigger_ref, error, finished_at "
        "FROM rota_runs"
    )
    keys = ("id", "name", "state", "key", "trigger", "trigger_ref", "error", "finished_at")
    return {row[0]: dict(zip(keys, row, strict=True)) for row in rows}


def _lost(runs: dict[str, dict[str, Any]], expected: Expected) -> Iterator[str]:
    stored = Counter((r["name"], r["key"]) for r in runs.values() if r["key"] is not None)
    for (name, key), what in expected.runs.items():
        if stored[(name, key)] != 1:
            yield f"{what}: {stored[(name, key)]} runs stored for {name} key {key}"


def _unfinished(runs: dict[str, dict[str, Any]]) -> Iterator[str]:
    for run in runs.values():
        if run["state"] != "SUCCEEDED":
            yield f"run {run['id']} ({run['name']}) is {run['state']}: {run['error']}"


def _steps_rerun(rota: Db, side: Db) -> Iterator[str]:
    """A step's checkpoint must hold its newest execution: an execution that began after
    the one checkpointed ran a completed step again (or a stale one's result was kept)."""
    newest: dict[tuple[str, str], int] = {}
    for execution, run_id, step in side.query("SELECT id, run_id, step FROM chaos_exec"):
        newest[(run_id, step)] = max(newest.get((run_id, step), 0), int(execution))
    rows = rota.query(
        "SELECT s.run_id, s.step_key, s.result FROM rota_steps s JOIN rota_runs r "
        "ON r.id = s.run_id WHERE s.state = 'SUCCEEDED' AND r.name IN (%s, %s)",
        ("chaos_flow", "chaos_approval"),
    )
    for run_id, step, result in rows:
        value = json.loads(result) if isinstance(result, str) else result
        if not isinstance(value, dict) or "execution" not in value:
            continue  # the approval's own checkpoint, not an effect step
        kept, last = int(value["execution"]), newest.get((run_id, step), 0)
        if kept != last:
            yield f"run {run_id} step {step}: checkpoint holds execution {kept}, newest {last}"


def _stale_checkpoints(rota: Db) -> Iterator[str]:
    rows = rota.query(
        "SELECT run_id, step, state, token, run_token FROM chaos_checkpoints "
        "WHERE token IS NOT NULL AND run_token IS NOT NULL AND token < run_token"
    )
    for run_id, step, state, token, run_token in rows:
        yield f"run {run_id} step {step} {state} written under lease {token} of {run_token}"


def _duplicated_effects(runs: dict[str, dict[str, Any]], side: Db) -> Iterator[str]:
    """A succeeded run applied exactly one effect per step or tool call: an extra one is an
    effect repeated under a new key."""
    applied = Counter(run_id for (run_id,) in side.query("SELECT run_id FROM chaos_effects"))
    for run in runs.values():
        want = EFFECTS.get(run["name"])
        if want is None or run["state"] != "SUCCEEDED":
            continue
        if (count := applied[run["id"]]) > want:
            yield f"run {run['id']} ({run['name']}) applied {count} effects, not {want}"


def _ticks(rota: Db) -> Iterator[str]:
    """Each fire time from the first tick to the last decided exactly once."""
    rows = rota.query(
        "SELECT fire_at, ticks, last_fire_at, outcome FROM rota_ticks WHERE schedule = %s "
        "ORDER BY fire_at",
        ("chaos_tick",),
    )
    covered = Counter(round(fire_at) + i for fire_at, ticks, _, _ in rows for i in range(ticks))
    if not covered:
        yield "no tick was recorded"
        return
    for second in range(min(covered), max(covered) + 1):
        if covered[second] != 1:
            yield f"fire time {second} decided {covered[second]} times"


def _webhooks(rota: Db, runs: dict[str, dict[str, Any]], expected: Expected) -> Iterator[str]:
    stored = Counter(
        key
        for (key,) in rota.query(
            "SELECT idempotency_key FROM rota_events WHERE name = %s", (chaos_app.HOOK,)
        )
    )
    for delivery in sorted(expected.webhooks):
        if stored[delivery] != 1:
            yield f"accepted delivery {delivery} stored {stored[delivery]} times"
    hook_runs = sum(1 for r in runs.values() if r["name"] == "chaos_hook")
    if hook_runs != len(stored):
        yield f"{len(stored)} deliveries stored but {hook_runs} chaos_hook runs"


def _budgets(rota: Db, runs: dict[str, dict[str, Any]]) -> Iterator[str]:
    calls = Counter(
        run_id
        for (run_id,) in rota.query(
            "SELECT run_id FROM rota_usage WHERE agent = %s", (chaos_app.AGENT,)
        )
    )
    budget = chaos_app.AGENT_REQUESTS
    for run_id, requests in calls.items():
        if requests > budget:
            yield f"agent run {run_id} made {requests} metered requests, budget {budget}"
    agent_runs = [r for r in runs.values() if r["name"] == chaos_app.AGENT]
    if agent_runs and not calls:
        yield "no agent usage was metered"


def _secrets(rota: Db, secrets: tuple[str, ...], logs: dict[str, str]) -> Iterator[str]:
    tables = [
        name
        for (name,) in rota.query(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            if rota.sqlite
            else "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        if name.startswith("rota_") and name != "rota_secrets"  # that one holds ciphertext
    ]
    for secret in secrets:
        for process, text in logs.items():
            if secret in text:
                yield f"secret in the log of {process}"
        for table in tables:
            dump = "\n".join(repr(row) for row in rota.query(f"SELECT * FROM {table}"))
            if secret in dump:
                yield f"secret stored in {table}"
