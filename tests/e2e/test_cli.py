"""The `rota` command, end to end: real stores (SQLite and PostgreSQL), the fixture app in
cli_app.py, and the installed console script in a subprocess for what needs a process of its
own (signals). Every bad-input test checks what the user sees, the exit code, and that the
store did not change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from store_reads import count_runs
from typer.testing import CliRunner, Result

from rota import App
from rota.cli import app as cli
from rota.clock import system_clock
from rota.model import RunFilter
from rota.storage import SqlStore
from rota.storage.schema import LATEST_VERSION

ROTA = Path(sys.executable).parent / "rota"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


pytestmark = pytest.mark.usefixtures("clean_cli_env")


@dataclass
class Env:
    url: str
    app: App

    def rota(self, *args: str, url: str | None = None, app: str = "cli_app:app") -> Result:
        return CliRunner().invoke(cli, ["--database-url", url or self.url, "--app", app, *args])

    def rota_json(self, *args: str) -> Any:
        result = self.rota(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def count_runs(self) -> int:
        return count_runs(self.url)


@pytest.fixture
def env(database_url: str, cli_app: ModuleType) -> Iterator[Env]:
    store = SqlStore(database_url)
    store.migrate()
    store.close()
    app: App = cli_app.app
    app.use_database(database_url)
    yield Env(database_url, app)
    app.close()


def assert_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output


# -- db migrate -------------------------------------------------------------------------


def test_db_migrate_creates_the_schema_then_does_nothing(database_url: str) -> None:
    first = CliRunner().invoke(cli, ["--database-url", database_url, "db", "migrate"])
    assert first.exit_code == 0, first.output
    assert f"migrated schema from version 0 to {LATEST_VERSION}" in first.stdout

    again = CliRunner().invoke(cli, ["--database-url", database_url, "db", "migrate"])
    assert again.exit_code == 0, again.output
    assert f"already at version {LATEST_VERSION}; nothing to do" in again.stdout
    store = SqlStore(database_url)
    assert store.schema_version() == LATEST_VERSION
    store.close()


def test_db_migrate_refuses_a_schema_newer_than_this_rota(env: Env) -> None:
    store = SqlStore(env.url)
    store.conn().execute("UPDATE rota_meta SET value = '999' WHERE key = 'schema_version'")
    store.close()
    before = env.count_runs()

    result = env.rota("db", "migrate")
    assert_error(
        result,
        1,
        f"schema is version 999, newer than this rota understands ({LATEST_VERSION})",
        "upgrade rota",
    )
    # Nothing else will touch it either: enqueueing and reading refuse the same way.
    assert_error(env.rota("run", "greet"), 1, "newer than this rota understands")
    assert_error(env.rota("runs", "list"), 1, "newer than this rota understands")

    store = SqlStore(env.url)
    assert store.schema_version() == 999
    store.close()
    assert env.count_runs() == before


# -- run, runs list, runs show ----------------------------------------------------------


def test_run_then_list_and_show_the_step_timeline(env: Env) -> None:
    enqueued = env.rota_json("run", "pipeline", "--payload", '{"n": 4}')
    run_id = enqueued["id"]
    assert enqueued == {"id": run_id, "name": "pipeline", "created": True}

    [queued] = env.rota_json("runs", "list")
    assert (queued["id"], queued["state"], queued["payload"]) == (run_id, "ENQUEUED", {"n": 4})

    env.app.drain()

    [listed] = env.rota_json("runs", "list")
    assert listed["state"] == "SUCCEEDED"
    assert listed["result"] == {"total": 10}
    assert listed["created_at"].endswith("Z")
    created = datetime.fromisoformat(listed["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert datetime.fromisoformat(listed["finished_at"]) >= created

    shown = env.rota_json("runs", "show", run_id)
    assert [(s["key"], s["state"], s["attempts"]) for s in shown["steps"]] == [
        ("fetch", "SUCCEEDED", 1),
        ("total", "SUCCEEDED", 1),
    ]
    assert [s["result"] for s in shown["steps"]] == [[1, 2, 3, 4], 10]
    fetch, total = shown["steps"]
    assert 0 <= fetch["offset_s"] <= total["offset_s"]
    assert fetch["duration_s"] >= 0 and fetch["error"] is None

    table = env.rota("runs", "show", run_id)
    assert table.exit_code == 0, table.output
    for text in (run_id, "pipeline (workflow)", '{"n":4}', '{"total":10}'):
        assert text in table.stdout
    timeline = re.findall(r"^ *(\d+) +(\w+) +(\w+) +(\d+) +\+\d", table.stdout, re.MULTILINE)
    assert timeline == [("0", "fetch", "SUCCEEDED", "1"), ("1", "total", "SUCCEEDED", "1")]

    listing = env.rota("runs", "list")
    assert listing.exit_code == 0, listing.output
    assert run_id in listing.stdout and "pipeline" in listing.stdout


def test_runs_list_filters_by_state_and_name(env: Env) -> None:
    greet = env.rota_json("run", "greet", "-p", '{"name": "ada"}')["id"]
    boom = env.rota_json("run", "boom")["id"]
    env.app.drain()

    assert [r["id"] for r in env.rota_json("runs", "list", "--state", "failed")] == [boom]
    assert [r["id"] for r in env.rota_json("runs", "list", "--name", "greet")] == [greet]
    both = env.rota_json("runs", "list", "-s", "FAILED", "-s", "SUCCEEDED")
    assert {r["id"] for r in both} == {greet, boom}
    assert len(env.rota_json("runs", "list", "--limit", "1")) == 1
    assert env.rota_json("runs", "list", "--state", "RUNNING") == []

    bad = env.rota("runs", "list", "--state", "DONE")
    assert bad.exit_code == 2 and "DONE" in bad.output


def test_run_with_an_idempotency_key_enqueues_once_and_waits_for_the_result(env: Env) -> None:
    first = env.rota("run", "greet", "-p", '{"name": "ada"}', "--idempotency-key", "k1")
    assert first.exit_code == 0, first.output
    assert "enqueued run" in first.stdout
    env.app.drain()

    again = env.rota("run", "greet", "-p", '{"name": "ada"}', "-k", "k1", "--wait")
    assert again.exit_code == 0, again.output
    assert "already exists for idempotency key 'k1'" in again.stdout
    assert '{"hello":"ada"}' in again.stdout
    assert env.count_runs() == 1


def test_run_wait_reports_a_failed_run(env: Env) -> None:
    env.rota_json("run", "boom", "-k", "once")
    env.app.drain()
    result = env.rota("run", "boom", "-k", "once", "--wait")
    assert_error(result, 1, "ended FAILED: ValueError: the ledger is closed")


def test_run_wait_gives_up_at_its_timeout_and_leaves_the_run_queued(env: Env) -> None:
    result = env.rota("run", "greet", "--wait", "--timeout", "0")
    assert_error(result, 1, "is still ENQUEUED after 0s; is a worker running?")
    [run] = env.rota_json("runs", "list")
    assert run["state"] == "ENQUEUED"


# -- cancel and retry -------------------------------------------------------------------


def test_cancel_a_queued_run(env: Env) -> None:
    run_id = env.rota_json("run", "greet")["id"]

    result = env.rota("runs", "cancel", run_id)
    assert result.exit_code == 0, result.output
    assert f"cancelled run {run_id} (greet)" in result.stdout
    assert env.rota_json("runs", "show", run_id)["state"] == "CANCELLED"

    assert_error(env.rota("runs", "cancel", run_id), 1, "already ended CANCELLED")
    env.app.drain()
    assert env.rota_json("runs", "show", run_id)["state"] == "CANCELLED"  # never executed


def test_cancel_a_running_run_asks_its_worker(env: Env) -> None:
    run_id = env.rota_json("run", "greet", "--priority", "7")["id"]
    [claimed] = env.app.store.claim("elsewhere", ["greet"], 1, system_clock.now(), 30)
    assert claimed.id == run_id and claimed.priority == 7

    result = env.rota("runs", "cancel", run_id)
    assert result.exit_code == 0, result.output
    assert f"cancel requested for run {run_id} (greet, RUNNING)" in result.stdout
    shown = env.rota_json("runs", "show", run_id)
    assert (shown["state"], shown["cancel_requested"]) == ("RUNNING", True)
    assert shown["lease_owner"] == "elsewhere"


def test_retry_a_failed_run(env: Env) -> None:
    run_id = env.rota_json("run", "boom")["id"]
    env.app.drain()
    failed = env.rota_json("runs", "show", run_id)
    assert failed["state"] == "FAILED"
    assert failed["error"]["type"] == "ValueError"
    shown = env.rota("runs", "show", run_id)
    assert "error: ValueError: the ledger is closed" in shown.stdout

    retried = env.rota_json("runs", "retry", run_id)
    assert (retried["id"], retried["state"], retried["error"]) == (run_id, "ENQUEUED", None)
    assert_error(
        env.rota("runs", "retry", run_id),
        1,
        f"run {run_id} is ENQUEUED; only FAILED or CANCELLED runs can be retried",
    )

    env.app.drain()
    again = env.rota_json("runs", "show", run_id)
    assert (again["state"], again["attempt"]) == ("FAILED", 2)
    assert env.count_runs() == 1


@pytest.mark.parametrize("verb", ["show", "cancel", "retry"])
def test_an_unknown_run_id_is_a_user_error(env: Env, verb: str) -> None:
    env.rota_json("run", "greet")
    result = env.rota("runs", verb, "no-such-run")
    assert_error(result, 3, "no run with id 'no-such-run'")
    assert env.count_runs() == 1
    assert env.rota_json("runs", "list")[0]["state"] == "ENQUEUED"


# -- bad input: a clear message, a non-zero exit, and an unchanged store -----------------


def test_an_unknown_job_name_lists_the_known_ones(env: Env) -> None:
    before = env.count_runs()
    result = env.rota("run", "nope")
    assert_error(result, 3, "unknown job or workflow 'nope'; known: boom, greet, pipeline")
    assert env.count_runs() == before


def test_a_payload_that_is_not_json_enqueues_nothing(env: Env) -> None:
    before = env.count_runs()
    result = env.rota("run", "greet", "--payload", "{name: ada}")
    assert_error(
        result,
        2,
        "--payload is not valid JSON",
        "line 1 column 2",
        """example: '{"customer": "acme", "amount": 5}'""",
    )
    assert env.count_runs() == before


def test_a_payload_that_cannot_be_stored_enqueues_nothing(env: Env) -> None:
    before = env.count_runs()
    result = env.rota("run", "greet", "--payload", '{"amount": NaN}')
    assert_error(result, 2, "the payload for 'greet' contains NaN or Infinity")
    assert env.count_runs() == before


def test_a_database_that_does_not_connect(env: Env) -> None:
    before = env.count_runs()
    for args in (("run", "greet"), ("runs", "list"), ("db", "migrate")):
        result = env.rota(*args, url=UNREACHABLE)
        assert_error(  # exit 5: database unavailable (docs/cli.md)
            result, 5, f"cannot connect to PostgreSQL at {UNREACHABLE}", "Connection refused"
        )
    assert env.count_runs() == before


def test_a_password_in_the_database_url_is_not_shown(env: Env) -> None:
    result = env.rota("runs", "list", url="postgresql://rota:hunter2@127.0.0.1:1/x")
    assert_error(result, 5, "postgresql://rota:***@127.0.0.1:1/x")
    assert "hunter2" not in result.output


def test_an_unsupported_database_url(env: Env) -> None:
    before = env.count_runs()
    result = env.rota("run", "greet", url="mysql://localhost/rota")
    assert_error(result, 2, "unsupported database 'mysql'", "postgresql://")
    assert env.count_runs() == before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope_app:app", "cannot import module 'nope_app' for --app nope_app:app"),
        ("cli_app:missing", "module 'cli_app' has no attribute 'missing'"),
        ("cli_app:greet", "cli_app:greet is a function, not a rota App"),
        (":app", "must look like module:attribute"),
    ],
)
def test_a_bad_app_is_a_user_error(env: Env, spec: str, message: str) -> None:
    before = env.count_runs()
    result = env.rota("run", "greet", app=spec)
    assert_error(result, 2, message)
    assert env.count_runs() == before


def test_a_worker_for_an_app_without_jobs_refuses_to_start(env: Env) -> None:
    result = env.rota("worker", app="cli_app:empty")
    assert_error(result, 2, "the app defines no jobs or workflows")


def test_reading_a_sqlite_file_that_does_not_exist_does_not_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(cli, ["--database-url", f"sqlite:///{missing}", "runs", "list"])
    assert_error(result, 2, f"there is no database at {missing}", "rota db migrate")
    assert not missing.exists()


# -- where the database URL comes from --------------------------------------------------


def test_store_commands_need_no_app(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = env.rota_json("run", "greet")["id"]
    monkeypatch.chdir(tmp_path)  # no app.py here: the implicit app:app is not needed
    result = CliRunner().invoke(cli, ["--database-url", env.url, "runs", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [run_id]


def test_the_database_url_comes_from_option_then_env_then_the_app(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = env.rota_json("run", "greet")["id"]
    other = f"sqlite:///{tmp_path / 'other.db'}"
    CliRunner().invoke(cli, ["--database-url", other, "db", "migrate"])

    def listed(*args: str) -> list[str]:
        result = CliRunner().invoke(cli, [*args, "runs", "list", "--json"])
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    # No option, no env: the app's own database_url (the fixture pointed it at env.url).
    assert listed("--app", "cli_app:app") == [run_id]
    monkeypatch.setenv("ROTA_APP", "cli_app:app")
    assert listed() == [run_id]
    monkeypatch.setenv("ROTA_DATABASE_URL", other)
    assert listed() == []
    assert listed("--database-url", env.url) == [run_id]


# -- demo -------------------------------------------------------------------------------


def test_demo_processes_its_events(sqlite_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--events", "40", "--database-url", sqlite_url, "--json", "--no-serve"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the full check is tests/integration/test_demo.py
    assert (summary["events"], summary["runs"]["bill_payment"]) == (40, {"SUCCEEDED": 40})
    agent_runs = summary["escalations"] + summary["shadow_runs"]
    assert count_runs(sqlite_url) == 40 + agent_runs


# -- the installed console script, in processes of its own -------------------------------

SIGNAL_APP = """
import os
import signal
import threading

from rota import App

app = App()


@app.job
def stop_worker(ctx):
    os.kill(os.getpid(), signal.SIGTERM)  # as a deployment would, while this run is running
    return "done"


@app.job
def hang(ctx):
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # an impatient operator: stop now
    threading.Event().wait()
"""


def run_rota(cwd: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "ROTA_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    environ.pop("ROTA_APP", None)
    return subprocess.run(
        [str(ROTA), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(SIGNAL_APP))
    return tmp_path


def only_run(url: str) -> Any:
    store = SqlStore(url)
    try:
        [run] = store.list_runs(RunFilter())
        return run
    finally:
        store.close()


def test_console_script_dev_stops_gracefully_on_sigterm(project: Path, sqlite_url: str) -> None:
    enqueued = run_rota(project, sqlite_url, "run", "stop_worker")
    assert enqueued.returncode == 0, enqueued.stderr
    assert enqueued.stdout.startswith("enqueued run ")

    dev = run_rota(project, sqlite_url, "dev", "--concurrency", "2", "--port", "0")

    assert dev.returncode == 0, dev.stderr
    assert f"(schema version {LATEST_VERSION})" in dev.stdout
    assert "/login/once?code=" in dev.stdout  # the dashboard's one-time sign-in link
    assert "made a local admin user 'dev'" in dev.stdout
    assert "serving hang, stop_worker (concurrency 2)" in dev.stdout
    assert "SIGTERM: stopping" in dev.stderr
    assert "stopped: claimed 1, succeeded 1, failed 0" in dev.stdout
    run = only_run(sqlite_url)
    assert (run.name, run.state.value, run.result) == ("stop_worker", "SUCCEEDED", "done")


def test_console_script_worker_second_signal_hands_runs_back(
    project: Path, sqlite_url: str
) -> None:
    assert run_rota(project, sqlite_url, "run", "hang").returncode == 0

    worker = run_rota(project, sqlite_url, "worker", "--grace", "600")

    # Both signals are pending at once, so Python may handle them in either order.
    first, second = ("SIGTERM", "SIGINT") if worker.returncode == 128 + 2 else ("SIGINT", "SIGTERM")
    assert worker.returncode in (128 + 2, 128 + 15), worker.stderr
    assert f"{first}: stopping" in worker.stderr
    assert f"{second} again: stopping now; 1 running run(s) went back to the queue" in worker.stderr
    run = only_run(sqlite_url)
    assert (run.state.value, run.lease_owner, run.attempt) == ("ENQUEUED", None, 1)
