"""The `rota` command. One module per noun; common.py holds what they share."""

from __future__ import annotations

from typing import Annotated

import typer

from ..version import __version__
from .group import EXIT_CODES_HELP, LazyCommand, RotaGroup, Settings

# Every command, in the order `rota --help` lists them, with its one-line help: shown
# without importing the command's module, which happens when it runs or its own help is
# asked for (tests/unit/test_startup.py checks each line against the command's own).
COMMANDS = (
    LazyCommand(
        "scheduler",
        "rota.cli.schedules:scheduler",
        "Turn the app's schedules into runs until SIGTERM or Ctrl-C (run any number).",
    ),
    LazyCommand(
        "run", "rota.cli.run:run", "Enqueue a run now and print its id (with --wait, its result)."
    ),
    LazyCommand(
        "worker",
        "rota.cli.worker:worker",
        "Execute runs of the app's jobs and workflows until SIGTERM or Ctrl-C.",
    ),
    LazyCommand(
        "dev",
        "rota.cli.worker:dev",
        "Develop locally: migrate the app's database (SQLite by default), run a worker and\n"
        "serve the HTTP API (webhooks at POST /hooks/{name}).",
    ),
    LazyCommand(
        "serve",
        "rota.cli.serve:serve",
        "Serve the HTTP API: webhook deliveries at POST /hooks/{name}, and GET /healthz.",
    ),
    LazyCommand(
        "demo",
        "rota.cli.demo:demo",
        "Payment webhooks through a job, exceptions to an agent, large entries to a human,\n"
        "a shadow sample; then what each way of doing it costs, and the dashboard.",
    ),
    LazyCommand(
        "whoami",
        "rota.cli.remote:whoami",
        "Print the principal your API token stands for, as the server sees it (as JSON,\n"
        "always; --json is accepted for uniformity).",
    ),
    LazyCommand(
        "init",
        "rota.cli.init:init",
        "Create a rota project: app.py, routines/, plans/, .env.example, README.md and\n"
        "test_app.py. Refuses to overwrite existing files.",
    ),
    LazyCommand("runs", "rota.cli.runs:runs_app", "Inspect and manage runs."),
    LazyCommand("audit", "rota.cli.audit:audit_app", "Read and verify the audit log."),
    LazyCommand(
        "approvals",
        "rota.cli.approvals:approvals_app",
        "List pending approval requests and approve or reject them.",
    ),
    LazyCommand(
        "cost", "rota.cli.cost:cost_app", "What runs cost, and which billing plan is cheapest."
    ),
    LazyCommand("db", "rota.cli.db:db_app", "Manage the database schema."),
    LazyCommand(
        "events",
        "rota.cli.events:events_app",
        "Inspect stored events and refused webhook deliveries; replay an event.",
    ),
    LazyCommand("schedules", "rota.cli.schedules:schedules_app", "Inspect and manage schedules."),
    LazyCommand(
        "secrets",
        "rota.cli.secrets:secrets_app",
        "Manage secrets: encrypted at rest, granted to principals.",
    ),
    LazyCommand(
        "principals",
        "rota.cli.principals:principals_app",
        "Manage principals: users and service accounts, their scopes and roles.",
    ),
    LazyCommand(
        "tokens", "rota.cli.tokens:tokens_app", "Manage API tokens (shown once, stored hashed)."
    ),
    LazyCommand(
        "shadow",
        "rota.cli.shadow:shadow_app",
        "Shadow mode: agreement between a job and its agent.",
    ),
    LazyCommand(
        "alerts",
        "rota.cli.alerts:alerts_app",
        "Recent alerts and their delivery state; send a test alert.",
    ),
    LazyCommand(
        "routines",
        "rota.cli.routines:routines_app",
        "Routine files: prompts with triggers, run as a user or a service account.",
    ),
)


class RootGroup(RotaGroup):
    """`rota` itself: the root group with the command table above."""

    lazy_commands = COMMANDS


app = typer.Typer(
    name="rota",
    cls=RootGroup,
    help="rota: recurring backend work, durably, with every step visible.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,  # rota --install-completion / --show-completion
    pretty_exceptions_show_locals=False,  # locals can hold database passwords and secrets
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rota {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="ROTA_DATABASE_URL",
            show_envvar=True,
            help="e.g. postgresql://user@host/db or sqlite:///rota.db; default: the "
            "app's own, else sqlite:///rota.db.",
        ),
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="ROTA_APP",
            show_envvar=True,
            metavar="MODULE:ATTR",
            help="The App to load, found like uvicorn does, from the current "
            "directory. [default: app:app]",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = Settings(database_url or None, app_spec or None)


def main() -> None:
    app(prog_name="rota")


__all__ = ["COMMANDS", "app", "main"]
