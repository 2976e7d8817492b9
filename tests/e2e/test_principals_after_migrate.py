"""Principals an app declares in code (`app.principal(...)`) reach the store through the CLI:
`rota db migrate` stores them when it finds the app, and every `rota principals` command
syncs them first, so an operator can list and disable them before any app process ran. A
sync never re-enables a principal a human disabled. SQLite and PostgreSQL; CliRunner, and
the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from store_reads import count_runs
from typer.testing import CliRunner, Result

from rota.cli import app as cli
from rota.storage import SqlStore
from rota.storage.audit import PRINCIPAL_CHANGED, SCOPE_CHANGED

ROTA = Path(sys.executable).parent / "rota"

APP_SOURCE = textwrap.dedent(
    """
    from rota import App

    app = App()
    app.principal("svc-billing", scopes=["billing:read"])


    @app.job(run_as="svc-billing")
    def sweep(ctx):
        return "swept"
    """
)

DECLARED = {
    "name": "svc-billing",
    "kind": "service",
    "scopes": ["billing:read"],
    "roles": [],
    "disabled": False,
}


@dataclass
class Project:
    """A directory holding an app module that declares svc-billing, as the cwd."""

    url: str
    spec: str  # what --app names

    def rota(self, *args: str, app: bool = True) -> Result:
        """`rota` in process; app=False runs it with no app to load at all."""
        where = ["--app", self.spec] if app else []
        return CliRunner().invoke(cli, ["--database-url", self.url, *where, *args])


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_ACTOR", "alice@example.com")
    monkeypatch.delenv("ROTA_APP", raising=False)
    monkeypatch.delenv("ROTA_DATABASE_URL", raising=False)


@pytest.fixture
def project(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    module = f"declared_{uuid.uuid4().hex[:8]}"  # a fresh import for every test
    (tmp_path / f"{module}.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Project(database_url, f"{module}:app")
    sys.modules.pop(module, None)


def principals(url: str) -> list[dict[str, Any]]:
    """What `rota principals list --json` shows with no app that could sync anything."""
    result = CliRunner().invoke(cli, ["--database-url", url, "principals", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def audit(url: str) -> list[tuple[str, str, str, str | None]]:
    store = SqlStore(url)
    try:
        records = sorted(store.audit_records(limit=50), key=lambda r: r.seq)
        return [(r.actor, r.actor_kind, r.action, r.subject) for r in records]
    finally:
        store.close()


def test_migrate_stores_the_declared_principal_which_can_then_be_disabled(
    project: Project,
) -> None:
    migrated = project.rota("db", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "principals declared by the app: svc-billing" in migrated.stdout
    assert principals(project.url) == [DECLARED]
    assert audit(project.url) == [
        ("rota:app", "machine", PRINCIPAL_CHANGED, "svc-billing"),
        ("rota:app", "machine", SCOPE_CHANGED, "svc-billing"),
    ]

    disabled = project.rota("principals", "disable", "svc-billing", app=False)
    assert disabled.exit_code == 0, disabled.output
    assert principals(project.url) == [{**DECLARED, "disabled": True}]

    refused = project.rota("run", "sweep")
    assert refused.exit_code == 4, refused.output  # refused (docs/cli.md)
    assert "principal 'svc-billing' is disabled" in refused.stderr
    assert count_runs(project.url) == 0

    again = project.rota("db", "migrate")  # syncs again: a human's disable stands
    assert again.exit_code == 0, again.output
    assert principals(project.url) == [{**DECLARED, "disabled": True}]


def test_principals_commands_sync_the_declared_principals_without_a_migrate(
    project: Project,
) -> None:
    store = SqlStore(project.url)
    store.migrate()  # the schema only: nothing has synced the app's principals yet
    store.close()
    assert principals(project.url) == []

    listed = project.rota("principals", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [DECLARED]


def test_disable_syncs_first_so_it_works_on_a_principal_no_app_stored_yet(
    project: Project,
) -> None:
    store = SqlStore(project.url)
    store.migrate()
    store.close()

    disabled = project.rota("principals", "disable", "svc-billing")
    assert disabled.exit_code == 0, disabled.output
    assert principals(project.url) == [{**DECLARED, "disabled": True}]
    assert [(actor, action) for actor, _, action, _ in audit(project.url)] == [
        ("rota:app", PRINCIPAL_CHANGED),  # created by the sync, as the app would have
        ("rota:app", SCOPE_CHANGED),
        ("alice@example.com", PRINCIPAL_CHANGED),  # then disabled by the human
    ]
    listed = project.rota("principals", "list", "--json")  # syncs again: still disabled
    assert json.loads(listed.stdout) == [{**DECLARED, "disabled": True}]


def test_a_grant_to_a_declared_principal_is_undone_by_the_next_sync(project: Project) -> None:
    assert project.rota("db", "migrate").exit_code == 0
    granted = project.rota("principals", "grant", "svc-billing", "-s", "billing:write")
    assert granted.exit_code == 0, granted.output
    assert principals(project.url)[0]["scopes"] == ["billing:read", "billing:write"]
    assert project.rota("principals", "list").exit_code == 0  # code is the source of truth
    assert principals(project.url)[0]["scopes"] == ["billing:read"]


def test_migrate_with_no_app_only_migrates(project: Project) -> None:
    migrated = project.rota("db", "migrate", app=False)  # cwd has no app.py
    assert migrated.exit_code == 0, migrated.output
    assert "principals declared" not in migrated.stdout
    assert principals(project.url) == []


def test_migrate_with_an_app_that_does_not_load_says_so_and_migrates_nothing(
    project: Project,
) -> None:
    result = CliRunner().invoke(
        cli, ["--database-url", project.url, "--app", "no_such_module:app", "db", "migrate"]
    )
    assert result.exit_code == 2, result.output
    assert "cannot import module 'no_such_module'" in result.stderr
    assert "Traceback" not in result.output
    store = SqlStore(project.url)
    try:
        assert store.schema_version() == 0
    finally:
        store.close()


def test_the_installed_command_finds_the_default_app_and_syncs_it(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(APP_SOURCE)  # the implicit default, app:app
    env = {k: v for k, v in os.environ.items() if k not in ("ROTA_APP", "ROTA_DATABASE_URL")}
    env.update(ROTA_DATABASE_URL=database_url, ROTA_ACTOR="alice@example.com")

    def rota(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROTA), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    migrated = rota("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert principals(database_url) == [DECLARED]
    disabled = rota("principals", "disable", "svc-billing")
    assert disabled.returncode == 0, disabled.stderr
    refused = rota("run", "sweep")
    assert refused.returncode == 4, refused.stderr  # refused (docs/cli.md)
    assert "principal 'svc-billing' is disabled" in refused.stderr
    assert count_runs(database_url) == 0


def test_a_token_can_be_made_for_a_declared_principal_before_anything_synced(
    project: Project,
) -> None:
    assert project.rota("db", "migrate", app=False).exit_code == 0  # stores no principal
    made = project.rota("tokens", "create", "svc-billing")
    assert made.exit_code == 0, made.output
    listed = project.rota("tokens", "list", "--json", app=False)
    assert listed.exit_code == 0, listed.output
    assert [t["principal"] for t in json.loads(listed.stdout)] == ["svc-billing"]
