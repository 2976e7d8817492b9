"""The `rota` command. One module per noun; common.py holds what they share."""

from __future__ import annotations

from typing import Annotated

import typer

from ..version import __version__
from .alerts import alerts_app
from .approvals import approvals_app
from .audit import audit_app
from .common import EXIT_CODES_HELP, RotaGroup, Settings
from .cost import cost_app
from .db import db_app
from .demo import demo
from .events import events_app
from .init import init
from .principals import principals_app
from .remote import whoami
from .routines import routines_app
from .run import run
from .runs import runs_app
from .schedules import scheduler, schedules_app
from .secrets import secrets_app
from .serve import serve
from .shadow import shadow_app
from .tokens import tokens_app
from .worker import dev, worker

app = typer.Typer(
    name="rota",
    cls=RotaGroup,
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


app.add_typer(runs_app, name="runs")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_app, name="approvals")
app.add_typer(cost_app, name="cost")
app.add_typer(db_app, name="db")
app.add_typer(events_app, name="events")
app.add_typer(schedules_app, name="schedules")
app.add_typer(secrets_app, name="secrets")
app.add_typer(principals_app, name="principals")
app.add_typer(tokens_app, name="tokens")
app.add_typer(shadow_app, name="shadow")
app.add_typer(alerts_app, name="alerts")
app.add_typer(routines_app, name="routines")
app.command("scheduler")(scheduler)
app.command("run")(run)
app.command("worker")(worker)
app.command("dev")(dev)
app.command("serve")(serve)
app.command("demo")(demo)
app.command("whoami")(whoami)
app.command("init")(init)


def main() -> None:
    app(prog_name="rota")


__all__ = ["app", "main"]
