"""Start-up: `import rota`, `rota --help` and `rota --version` load no heavy dependency and no
command module (issues 16 and 18). Each case runs in a fresh interpreter and reads its
`sys.modules`; no timings here (docs/benchmarks.md#start-up measures those)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import rota
import rota.cost
import rota.cost.compare
import rota.cost.forecast
import rota.routines
from rota.cli import COMMANDS, app
from rota.cli.group import RotaGroup

# Never loaded by `import rota`, `rota --help` or `rota --version`.
HEAVY = (
    "anthropic",
    "openai",
    "mcp",
    "psycopg",
    "httpx",
    "pydantic",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "opentelemetry",
    "genai_prices",
    "jsonschema",
    "yaml",
    "jinja2",
    "cryptography",
)
# What the CLI may load to print its help or version: the package face, the version, the
# root group and its table. Anything else of rota's is a command's or the runtime's.
CLI_MODULES = {"rota", "rota.lazy", "rota.version", "rota.errors", "rota.cli", "rota.cli.group"}
MARK = "--modules--"


def loaded_after(code: str, *argv: str) -> tuple[str, set[str]]:
    """Run `code` in a fresh interpreter; its output and the modules it had loaded."""
    probe = f"import json, sys\n{code}\nprint({MARK!r} + json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
    )
    output, _, modules = proc.stdout.rpartition(MARK)
    return output, set(json.loads(modules))


def run_cli(*argv: str) -> tuple[str, set[str]]:
    code = (
        "sys.argv = ['rota', *sys.argv[1:]]\n"
        "from rota.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    return loaded_after(code, *argv)


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_import_rota_loads_nothing_heavy() -> None:
    _, modules = loaded_after("import rota")
    assert heavy_in(modules) == []
    assert {m for m in modules if m.startswith("rota")} == {"rota", "rota.lazy", "rota.version"}
    assert "rich" not in modules and "typer" not in modules


@pytest.mark.parametrize("argv", [("--help",), ("--version",)])
def test_cli_help_and_version_load_no_command(argv: tuple[str, ...]) -> None:
    output, modules = run_cli(*argv)
    assert heavy_in(modules) == []
    assert {m for m in modules if m.startswith("rota")} <= CLI_MODULES
    if argv == ("--version",):
        assert output.strip() == f"rota {rota.__version__}"
    else:
        for command in COMMANDS:
            assert f" {command.name} " in output  # every command listed, none imported


def test_a_command_loads_only_its_own_module() -> None:
    output, modules = run_cli("db", "--help")
    assert "Manage the database schema." in output
    assert "rota.cli.db" in modules
    assert not {"rota.cli.runs", "rota.cli.serve", "rota.cli.demo"} & modules


def test_a_sqlite_command_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    db = tmp_path / "rota.db"
    _, modules = run_cli("db", "migrate", "--database-url", f"sqlite:///{db}")
    assert db.exists()  # the command ran and created the schema
    assert "psycopg" not in modules and "httpx" not in modules


# What `from rota import App` leaves for the paths that need it: reading routine files and
# building their agents, comparing billing plans (rota cost, the dashboard's costs) and
# reading a prices file.
APP_DEFERS = {
    "rota.routines.loader",
    "rota.routines.spec",
    "rota.routines.build",
    "rota.agentloop.agent",
    "rota.cost.compare",
    "rota.cost.forecast",
    "rota.cost.plans",
    "rota.cost.overrides",
}


def test_from_rota_import_app_loads_only_what_the_app_needs() -> None:
    _, modules = loaded_after("from rota import App")
    # pydantic (tool schemas, price files) and prometheus_client (the worker's metrics) stay
    assert {m.split(".")[0] for m in heavy_in(modules)} == {"prometheus_client", "pydantic"}
    assert not APP_DEFERS & modules
    assert not {m for m in modules if m.startswith("rota.cli")}


def test_names_of_lazy_packages_resolve_to_their_definitions() -> None:
    _, modules = loaded_after("from rota.routines import Routines, load_dir")
    assert "rota.routines.loader" in modules
    for package in (rota.cost, rota.routines):
        for name in package.__all__:
            assert getattr(getattr(package, name), "__name__", name) == name, name
        assert set(package.__all__) <= set(dir(package))
    # `compare` and `forecast` are functions and submodules (imported above): the function
    # keeps the name
    assert callable(rota.cost.compare) and callable(rota.cost.forecast)
    assert rota.cost.compare.__module__ == "rota.cost.compare"


def test_public_names_resolve_lazily_to_their_definitions() -> None:
    _, modules = loaded_after("from rota import App, Agent, Budget, tool, cron, every, at")
    assert "rota.app" in modules and "rota.agentloop.agent" in modules
    for name in rota.__all__:
        value = getattr(rota, name)
        assert getattr(value, "__name__", name) == name  # the object, not a module
    assert set(rota.__all__) <= set(dir(rota))
    with pytest.raises(AttributeError, match="module 'rota' has no attribute 'Nope'"):
        _ = rota.Nope


def _root() -> tuple[RotaGroup, typer.Context]:
    group = typer.main.get_command(app)
    assert isinstance(group, RotaGroup)
    return group, typer.Context(group, info_name="rota")


def test_the_table_matches_the_real_commands() -> None:
    group, ctx = _root()
    assert group.list_commands(ctx) == [c.name for c in COMMANDS]
    for entry in COMMANDS:
        real = group.get_command(ctx, entry.name)
        assert real is not None and real.name == entry.name
        first_paragraph = (real.help or "").split("\n\n")[0].strip()
        assert entry.help == first_paragraph, entry.name


def test_root_help_is_the_same_before_and_after_loading_every_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    group, ctx = _root()
    lazy = group.get_help(ctx) + capsys.readouterr().out  # rich prints; click returns
    for name in group.list_commands(ctx):
        group.get_command(ctx, name)
    loaded = group.get_help(ctx) + capsys.readouterr().out
    assert "Inspect and manage runs." in lazy
    assert lazy == loaded


def _every_command(group: typer.core.TyperGroup, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    ctx = typer.Context(group, info_name=path[-1] if path else "rota")
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, (*path, name)
        found.append((*path, name))
        if isinstance(command, typer.core.TyperGroup):
            found.extend(_every_command(command, (*path, name)))
    return found


def test_every_listed_command_exists_and_its_help_renders() -> None:
    group, _ = _root()
    commands = _every_command(group, ())
    assert len(commands) > len(COMMANDS)  # the groups' own commands too
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: rota {' '.join(path)}" in " ".join(result.output.split())


def test_a_mistyped_command_is_still_suggested() -> None:
    result = CliRunner().invoke(app, ["rnus"])
    assert result.exit_code == 2
    assert "No such command 'rnus'" in result.output
    assert "Did you mean 'runs'?" in result.output
