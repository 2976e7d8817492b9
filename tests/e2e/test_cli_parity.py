"""Found by an outside check: the CLI took input that the HTTP API refuses, or crashed on it.
Each case now gets one clear line and a usage, not-found or refused exit code, and nothing is
stored, on SQLite and PostgreSQL: a --since before 1970 (it was a traceback), a fire token for
a job the app does not have or for ten thousand days, an event name with a control
character, an unknown alert kind, rota's own jobs run by hand, and a runs query whose since
is after its until."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_module import AppModule, app_module
from starlette.testclient import TestClient
from typer.testing import Result

from rota import App
from rota.api import create_api
from rota.errors import ConfigError
from rota.identity import admin, tokens

Env = AppModule
MODULE = "cli_parity_app"
APP_SOURCE = """
from rota import App

app = App()
app.principal("ops", kind="user", roles=["admin"])


@app.job
def report(ctx, payload=None):
    return "done"
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    with app_module(Env, APP_SOURCE, MODULE, database_url, tmp_path, monkeypatch) as env:
        yield env


def refused(result: Result, code: int, *words: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output
    return result.output


@pytest.mark.parametrize("command", [("cost", "report"), ("audit", "list")])
def test_a_since_before_1970_is_one_clear_line(env: Env, command: tuple[str, ...]) -> None:
    refused(env.rota(*command, "--since", "99999999d"), 2, "99999999d", "before 1970")
    refused(env.rota(*command, "--since", "9999-12-31T00:00:00Z"), 2, "out of range")


def test_a_fire_token_names_a_job_of_the_app_and_lives_ten_years_at_most(env: Env) -> None:
    before = env.app.store.principals()
    refused(env.rota("tokens", "create", "--fire", "nope"), 3, "'nope'", "report")
    refused(env.rota("tokens", "create", "--fire", "rota:alert"), 4, "rota's own jobs")
    refused(env.rota("tokens", "create", "ops", "--expires", "99999d"), 2, "at most 3650d")
    assert env.app.store.principals() == before  # no fire-nope principal was made
    assert env.app.store.tokens(None) == []
    made = env.rota("tokens", "create", "--fire", "report", "--expires", "30d")
    assert made.exit_code == 0, made.output


def test_an_event_name_with_a_control_character_is_refused(env: Env) -> None:
    refused(env.rota("events", "emit", "a\x01b"), 2, "control characters")
    assert env.app.store.events(limit=10) == []


def test_an_unknown_alert_kind_is_refused_naming_the_kinds(env: Env) -> None:
    refused(env.rota("alerts", "list", "--kind", "bogus"), 2, "'bogus'", "failure", "silence")
    assert env.rota("alerts", "list", "--kind", "silence").exit_code == 0


def test_rotas_own_jobs_are_not_run_by_hand(env: Env) -> None:
    refused(env.rota("run", "rota:alert"), 4, "rota's own jobs")
    assert env.runs() == []


def test_a_runs_query_with_since_after_until_is_a_400(env: Env) -> None:
    issued = tokens.issue(env.app.store, "ops", admin.Actor("test", "human"))
    with TestClient(create_api(env.app), raise_server_exceptions=False) as client:
        answer = client.get(
            "/api/runs?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            headers={"Authorization": f"Bearer {issued.token}"},
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert "since" in answer.json()["message"] and "until" in answer.json()["message"]


def test_a_plain_function_is_not_taken_as_a_workflow(sqlite_url: str) -> None:
    app = App(sqlite_url)
    with pytest.raises(ConfigError, match=r"needs an async function.*'settle'.*@app\.job"):

        @app.workflow
        def settle(ctx: Any) -> None:
            ctx.step("charge", lambda: 1)

    assert "settle" not in app.definitions
    app.close()
