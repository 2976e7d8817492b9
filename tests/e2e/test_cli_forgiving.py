"""A CLI that forgives (issue 16): root options anywhere, a broken app.py in a few lines,
read-only commands without the app, --json everywhere with JSON errors, one exit-code table,
did-you-mean for decorator options, shell completion, and `rota shadow report UNKNOWN`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from store_reads import count_runs
from typer.testing import CliRunner, Result

from rota import Agent, App
from rota.cli import app as cli
from rota.cli.common import GLOBAL_OPTIONS, ExitCode, hoist_global_options
from rota.errors import ConfigError
from rota.storage import SqlStore
from rota.testing import say, scripted

ROTA = Path(sys.executable).parent / "rota"


pytestmark = pytest.mark.usefixtures("clean_cli_env")


@pytest.fixture
def migrated(database_url: str, cli_app: ModuleType) -> Iterator[str]:
    store = SqlStore(database_url)
    store.migrate()
    store.close()
    yield database_url
    cli_app.app.close()


def rota(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def runs(url: str) -> list[dict[str, Any]]:
    listed = rota("runs", "list", "--json", "--database-url", url)
    assert listed.exit_code == 0, listed.output
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


# -- root options before or after the sub-command ---------------------------------------


def _leaf_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    children = getattr(command, "commands", None)
    if not children:
        yield path, command
        return
    for name, child in children.items():
        yield from _leaf_paths(child, (*path, name))


def test_every_command_takes_the_root_options_after_its_name() -> None:
    root = typer.main.get_command(cli)
    ctx = typer.Context(root)
    for name in root.list_commands(ctx):  # commands load on first use: load them all
        root.get_command(ctx, name)
    paths = list(_leaf_paths(root))
    assert len(paths) > 40  # every noun's verbs, not just a few
    for path, command in paths:
        args = [*path, "--app", "x:app", "--database-url=sqlite:///a.db", "--flag"]
        hoisted = hoist_global_options(root, ctx, args)  # type: ignore[arg-type]
        own = {
            o for o in GLOBAL_OPTIONS if any(o in getattr(p, "opts", ()) for p in command.params)
        }
        expected_front = [] if "--app" in own else ["--app", "x:app"]
        expected_front += [] if "--database-url" in own else ["--database-url=sqlite:///a.db"]
        assert hoisted[: len(expected_front)] == expected_front, path
        assert sorted(hoisted) == sorted(args), path  # nothing dropped, nothing added


def test_a_command_with_an_option_of_the_same_name_keeps_it() -> None:
    root = typer.main.get_command(cli)
    args = ["demo", "--database-url", "sqlite:///d.db", "--app", "x:app"]
    hoisted = hoist_global_options(root, typer.Context(root), args)  # type: ignore[arg-type]
    assert hoisted == ["--app", "x:app", "demo", "--database-url", "sqlite:///d.db"]


def test_nothing_after_a_double_dash_moves() -> None:
    root = typer.main.get_command(cli)
    args = ["run", "greet", "--", "--app", "x:app"]
    assert hoist_global_options(root, typer.Context(root), args) == args  # type: ignore[arg-type]


def test_root_options_work_before_after_and_with_equals(migrated: str) -> None:
    url = migrated
    forms = [
        ["--database-url", url, "--app", "cli_app:app", "run", "greet", "--json"],
        ["run", "greet", "--json", "--app", "cli_app:app", "--database-url", url],
        ["run", "--app=cli_app:app", "greet", f"--database-url={url}", "--json"],
    ]
    for form in forms:
        result = rota(*form)
        assert result.exit_code == 0, (form, result.output)
        assert json.loads(result.stdout)["created"] is True
    assert len(runs(url)) == 3
    nested = rota("runs", "show", runs(url)[0]["id"], "--json", "--database-url", url)
    assert nested.exit_code == 0, nested.output
    assert json.loads(nested.stdout)["name"] == "greet"


def test_worker_takes_app_after_the_command(tmp_path: Path) -> None:
    result = rota(
        "worker", "--app", "no_such_module_here:app", "--database-url", "sqlite:///:memory:"
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "cannot import module 'no_such_module_here' for --app no_such_module_here:app" in (
        result.stderr
    )


# -- an app that does not import ---------------------------------------------------------

BROKEN = [
    (
        "syntax",
        "import rota\n\ndef f(:\n    pass\n",
        "{m}.py:3: def f(:",
        "SyntaxError: invalid syntax",
    ),
    (
        "missing import",
        "import rota\nimport no_such_package_zz\n",
        "{m}.py:2: import no_such_package_zz",
        "ModuleNotFoundError: No module named 'no_such_package_zz'",
    ),
    (
        "exception",
        "import rota\n\nCONFIG = {}\nLIMIT = CONFIG['limit']\n",
        "{m}.py:4: LIMIT = CONFIG['limit']",
        "KeyError: 'limit'",
    ),
]


@pytest.mark.parametrize(("case", "source", "where", "what"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_app_is_shown_in_three_lines(
    migrated: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    source: str,
    where: str,
    what: str,
) -> None:
    module = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    before = count_runs(migrated)
    result = rota("run", "greet", "--app", f"{module}:app", "--database-url", migrated)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr == (
        f"error: cannot import the app {module}:app:\n  {where.format(m=module)}\n  {what}\n"
    )
    assert count_runs(migrated) == before


def test_the_users_frame_is_the_innermost_of_their_files(
    migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = f"helper_{uuid.uuid4().hex[:8]}"
    module = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{helper}.py").write_text("def load():\n    return int('twelve')\n")
    (tmp_path / f"{module}.py").write_text(f"import {helper}\n\nSIZE = {helper}.load()\n")
    monkeypatch.chdir(tmp_path)
    result = rota("run", "greet", "--app", f"{module}:app", "--database-url", migrated)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr == (
        f"error: cannot import the app {module}:app:\n"
        f"  {helper}.py:2: return int('twelve')\n"
        "  ValueError: invalid literal for int() with base 10: 'twelve'\n"
    )


def test_a_misspelt_app_attribute_says_did_you_mean(
    migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"good_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("import rota\n\napp = rota.App()\n")
    monkeypatch.chdir(tmp_path)
    result = rota("run", "greet", "--app", f"{module}:ap", "--database-url", migrated)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr == (
        f"error: module {module!r} has no attribute 'ap' (did you mean 'app'?); "
        f"pass --app {module}:<the name of your App>\n"
    )


READ_ONLY = [
    ["runs", "list"],
    ["audit", "list"],
    ["audit", "verify"],
    ["cost", "report"],
    ["approvals", "list"],
    ["principals", "list"],
    ["tokens", "list"],
    ["events", "list"],
]


def test_read_only_commands_work_when_the_app_does_not_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("import rota\n\napp = rota.App(\n")  # never closed
    store = SqlStore("sqlite:///rota.db")  # where the CLI looks when the app cannot say
    store.migrate()
    store.close()
    made = App("sqlite:///rota.db")
    made.add(lambda ctx: None, name="nightly")
    made.run_now("nightly")
    made.close()
    for args in READ_ONLY:
        result = subprocess.run([ROTA, *args, "--json"], capture_output=True, text=True)
        assert result.returncode == 0, (args, result.stderr)
        json.loads(result.stdout)  # one JSON document on stdout
        assert result.stderr.splitlines() == [
            "warning: the app does not import (app.py:3: app = rota.App(; SyntaxError: '(' "
            "was never closed); using sqlite:///rota.db"
        ], args
    listed = subprocess.run([ROTA, "runs", "list", "--json"], capture_output=True, text=True)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["nightly"]


def test_commands_that_need_the_app_still_refuse_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.py").write_text("import rota\nraise RuntimeError('no config')\n")
    result = subprocess.run([ROTA, "run", "nightly"], capture_output=True, text=True)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == (
        "error: cannot import the app app:app:\n"
        "  app.py:2: raise RuntimeError('no config')\n"
        "  RuntimeError: no config\n"
    )
    assert not (tmp_path / "rota.db").exists()  # nothing was created


# -- --json and the exit-code table -------------------------------------------------------


def test_errors_are_json_on_stdout_with_the_exit_code(migrated: str) -> None:
    url = migrated
    cases = [
        (["runs", "show", "nope"], ExitCode.NOT_FOUND, "not_found", "no run with id 'nope'"),
        (["run", "nope", "--app", "cli_app:app"], ExitCode.NOT_FOUND, "not_found", "'nope'"),
        (["runs", "list", "--limit", "0"], ExitCode.USAGE, "usage", "--limit"),
        (["principals", "grant", "ghost", "-s", "a:b"], ExitCode.NOT_FOUND, "not_found", "ghost"),
        (["tokens", "revoke", "nope"], ExitCode.REFUSED, "refused", "no token with id 'nope'"),
    ]
    for args, code, kind, fragment in cases:
        result = rota(*args, "--json", "--database-url", url)
        assert result.exit_code == code, (args, result.output)
        answer = json.loads(result.stdout)
        assert answer["error"] == kind and fragment in answer["message"], (args, answer)
        assert result.stderr == "", args
    unreachable = rota("runs", "list", "--json", "--database-url", "postgresql://x@127.0.0.1:1/x")
    assert unreachable.exit_code == ExitCode.UNAVAILABLE
    assert json.loads(unreachable.stdout)["error"] == "unavailable"
    assert runs(url) == []


def test_a_failed_run_is_exit_1_with_one_json_document(migrated: str, cli_app: ModuleType) -> None:
    cli_app.app.use_database(migrated)
    handle = cli_app.app.run_now("boom")
    cli_app.app.drain()
    assert handle.get().state == "FAILED"
    again = rota("runs", "retry", handle.id, "--json", "--database-url", migrated)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["state"] == "ENQUEUED"


def test_state_changing_commands_answer_in_json(migrated: str) -> None:
    url = migrated
    steps: list[tuple[list[str], Any]] = [
        (["db", "migrate"], lambda j: j["to"] >= 1),
        (["principals", "add", "svc-x", "-s", "x:read"], lambda j: j["name"] == "svc-x"),
        (["principals", "grant", "svc-x", "-s", "x:write"], lambda j: "x:write" in j["scopes"]),
        (["principals", "revoke", "svc-x", "-s", "x:write"], lambda j: j["scopes"] == ["x:read"]),
        (["principals", "disable", "svc-x"], lambda j: j["disabled"] is True),
        (["principals", "enable", "svc-x"], lambda j: j["disabled"] is False),
        (["principals", "show", "svc-x"], lambda j: j["name"] == "svc-x"),
    ]
    for args, check in steps:
        result = rota(*args, "--json", "--database-url", url)
        assert result.exit_code == 0, (args, result.output)
        assert check(json.loads(result.stdout)), (args, result.stdout)
    made = rota("tokens", "create", "svc-x", "--json", "--database-url", url)
    assert made.exit_code == 0, made.output
    token = json.loads(made.stdout)
    assert token["principal"] == "svc-x" and token["token"]
    revoked = rota("tokens", "revoke", token["id"], "--json", "--database-url", url)
    assert json.loads(revoked.stdout) == {"id": token["id"], "revoked": True}


def test_the_exit_codes_are_in_the_help() -> None:
    result = rota("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "Exit codes: 0 ok; 1 the work failed; 2 usage or configuration error; 3 not" in text
    assert "found; 4 refused; 5 database unavailable." in text


def test_shell_completion_can_be_shown() -> None:
    # Typer's switch to name the shell instead of detecting it from the parent processes
    # (here: pytest, not a shell).
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    result = subprocess.run(
        [ROTA, "--show-completion", "bash"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F _rota_completion rota" in result.stdout
    assert "_ROTA_COMPLETE=complete_bash" in result.stdout


# -- shadow report of a job that does not shadow -----------------------------------------


def test_shadow_report_of_an_unknown_job_is_not_found(migrated: str) -> None:
    result = rota("shadow", "report", "nope", "--database-url", migrated)
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert result.stderr == (
        "error: no shadowed job named 'nope'; no job has shadow runs yet "
        "(define one with escalate_to=..., shadow=...)\n"
    )
    as_json = rota("shadow", "report", "nope", "--json", "--database-url", migrated)
    assert as_json.exit_code == ExitCode.NOT_FOUND
    assert json.loads(as_json.stdout)["error"] == "not_found"


# -- decorator options ---------------------------------------------------------------------


def test_a_misspelt_decorator_option_says_did_you_mean() -> None:
    app = App("sqlite:///:memory:")
    with pytest.raises(
        ConfigError, match=r"@app\.job: unknown option 'retry' \(did you mean 'retries'\?\)"
    ):
        app.job(retry=3)  # type: ignore[call-arg]
    with pytest.raises(
        ConfigError, match=r"@app\.workflow: unknown option 'time_out' \(did you mean 'timeout'\?\)"
    ):
        app.workflow(time_out="5s")  # type: ignore[call-arg]
    with scripted("helper", script=[say("ok")]):
        agent = Agent(name="helper", model="scripted:helper", instructions="help")
        with pytest.raises(
            ConfigError, match=r"unknown option 'concurency' \(did you mean 'concurrency'\?\)"
        ):
            app.agent(agent, concurency=2)  # type: ignore[call-arg]
        with pytest.raises(
            ConfigError,
            match=r"Agent\('helper'\): unknown option 'max_step' \(did you mean 'max_steps'\?\)",
        ):
            Agent(name="helper", model="scripted:helper", instructions="h", max_step=3)  # type: ignore[call-arg]
    assert app.definitions == {}  # nothing was registered half-way


def test_correct_decorator_options_still_register() -> None:
    app = App("sqlite:///:memory:")

    @app.job(retries=2, timeout="5s", priority=3)
    def tidy(ctx: Any) -> None:
        return None

    definition = app.definitions["tidy"]
    assert (definition.max_attempts, definition.timeout_s, definition.priority) == (3, 5.0, 3)
