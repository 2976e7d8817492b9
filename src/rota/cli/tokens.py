"""`rota tokens create|list|revoke`: API tokens of principals, for the HTTP API.

A token is printed once, on stdout, when it is made (so that `TOKEN=$(rota tokens create
svc-ci)` captures it); rota keeps only its hash and can never show it again.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..alerts.watchdog import INTERNAL_PREFIX
from ..durations import seconds
from ..identity import admin, tokens
from .common import ExitCode, err, fail, print_json, print_table, read_store, report, when
from .principals import declaring_app, synced_store

tokens_app = typer.Typer(
    help="Manage API tokens (shown once, stored hashed).", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@tokens_app.command("create")
def create(
    ctx: typer.Context,
    principal: Annotated[
        str | None,
        typer.Argument(
            help="The principal the token stands for (with --fire: default fire-NAME, made "
            "with no scopes or roles)."
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", "-e", help="Lifetime, e.g. 30d or 12h (default: no expiry)."),
    ] = None,
    fire: Annotated[
        str | None,
        typer.Option(
            "--fire",
            metavar="NAME",
            help="Allow only firing this job, workflow or agent (POST /api/jobs/NAME/runs), "
            "or this routine (POST /api/routines/NAME/fire); every other route refuses the "
            "token.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a token and print it once."""
    lifetime = None if expires is None else seconds(expires, what="--expires")
    if principal is None and fire is None:
        fail("name the principal the token stands for (or pass --fire NAME)", code=ExitCode.USAGE)
    if fire is not None:
        _known_target(ctx, fire)
    with synced_store(ctx) as store:  # a principal declared in code may have no row yet
        if fire is not None:
            issued = tokens.issue_fire(
                store, fire, admin.cli_actor(), principal=principal, expires_in_s=lifetime
            )
        else:
            assert principal is not None
            issued = tokens.issue(store, principal, admin.cli_actor(), expires_in_s=lifetime)
    only = f", only to fire {fire!r} ({fire_endpoint(ctx, fire)})" if fire else ""
    until = f"until {when(issued.expires_at)} UTC" if issued.expires_at else "with no expiry"
    if as_json:  # the token is in it: this is the one time it is shown
        shown = {"id": issued.id, "principal": issued.principal, "token": issued.token}
        print_json(shown | {"expires_at": issued.expires_at, "fire": fire})
        return
    err.print(
        f"token {issued.id} for {issued.principal}{only}, valid {until}; it is shown only now, "
        "store it somewhere safe:"
    )
    typer.echo(issued.token)


def _known_target(ctx: typer.Context, name: str) -> None:
    """With the app at hand, a fire token must name one of its jobs, workflows, agents or
    routines (as `POST /api/tokens` checks); without it, the name cannot be checked."""
    if name.startswith(INTERNAL_PREFIX):  # POST /api/jobs/{name}/runs refuses these
        fail(f"--fire {name!r}: rota's own jobs cannot be fired", code=ExitCode.REFUSED)
    app = declaring_app(ctx, tolerant=True)
    if app is None or name in app.definitions:
        return
    known = ", ".join(sorted(n for n in app.definitions if not n.startswith(INTERNAL_PREFIX)))
    fail(
        f"--fire {name!r}: no job, workflow, agent or routine of that name in the app "
        f"(it has: {known or 'none'})",
        code=ExitCode.NOT_FOUND,
    )


def fire_endpoint(ctx: typer.Context, name: str) -> str:
    """Where a fire token for `name` is used: a routine's own fire endpoint, else the
    endpoint that enqueues a run of a job, workflow or agent."""
    app = declaring_app(ctx, tolerant=True)
    if app is not None and name in app.routines.loaded:
        return f"POST /api/routines/{name}/fire"
    return f"POST /api/jobs/{name}/runs"


@tokens_app.command("list")
def list_tokens(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option("--principal", "-p")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tokens (ids and state, never the tokens)."""
    with read_store(ctx) as store:
        found = store.tokens(principal)
    if as_json:
        print_json([tokens.token_json(t) for t in found])
        return
    if not found:
        err.print("no tokens; make one with `rota tokens create PRINCIPAL`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "principal", "created (UTC)", "expires (UTC)", "revoked (UTC)"):
        table.add_column(column)
    for t in found:
        table.add_row(t.id, t.principal, when(t.created_at), when(t.expires_at), when(t.revoked_at))
    print_table(table)


@tokens_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token at once."""
    with read_store(ctx) as store:
        tokens.revoke(store, token_id, admin.cli_actor())
    report(as_json, {"id": token_id, "revoked": True}, f"token {token_id} revoked")
