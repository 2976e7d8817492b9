"""`rota secrets set|list|delete`. Values come from stdin, never from the command line
(argv ends up in shell history and in every other user's `ps`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from ..clock import iso
from ..identity.admin import cli_actor
from ..identity.audit import record
from ..identity.secrets import SecretDenied, SecretNotFound, Vault
from ..storage.audit import SECRET_CHANGED
from .common import ExitCode, JsonFlag, err, fail, print_json, print_table, read_store, report, when

secrets_app = typer.Typer(
    help="Manage secrets: encrypted at rest, granted to principals.", no_args_is_help=True
)

SHORT = 8  # characters: below this, redaction catches ordinary words too

SecretName = Annotated[str, typer.Argument(help="The secret's name, as tools ask for it.")]


@contextmanager
def _vault(ctx: typer.Context) -> Iterator[Vault]:
    with read_store(ctx) as store:
        try:
            yield Vault(store)
        except (SecretNotFound, SecretDenied) as exc:
            fail(str(exc), code=ExitCode.USAGE)


def _audit(vault: Vault, name: str, **detail: object) -> None:
    actor = cli_actor()
    record(vault.store, actor.name, SECRET_CHANGED, actor_kind=actor.kind, subject=name, **detail)  # type: ignore[arg-type]


@secrets_app.command("set")
def set_secret(
    ctx: typer.Context,
    name: SecretName,
    value: Annotated[str | None, typer.Argument(hidden=True)] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option("--grant", "-g", help="A principal that may read it (repeatable)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create or replace a secret, reading its value from stdin.

    e.g. `printf %s "$TOKEN" | rota secrets set github_token --grant triage-bot`.
    Without --grant an existing secret keeps its grants.
    """
    if value is not None:
        fail(
            "secret values are never taken from the command line (it is kept in shell "
            f"history and visible to other users); pipe the value on stdin instead: "
            f'printf %s "$VALUE" | rota secrets set {name}',
            code=ExitCode.USAGE,
        )
    if sys.stdin is None or sys.stdin.isatty():
        secret = typer.prompt(f"value for {name}", hide_input=True, err=True)
    else:
        secret = sys.stdin.read()
        # `echo value |` adds one newline: it is not part of the value.
        secret = secret.removesuffix("\n").removesuffix("\r")
    if not secret:
        fail(
            f"the value read from stdin for secret {name!r} is empty; pipe a value",
            code=ExitCode.USAGE,
        )
    if len(secret) < SHORT:
        err.print(
            f"warning: secret {name} is only {len(secret)} characters long; it is redacted "
            "wherever that text appears in what rota stores, logs or sends, so a short value "
            "also hides innocent text (and is easy to guess)",
            style="yellow",
        )
    with _vault(ctx) as vault:
        vault.set(name, secret, grant)
        grants = next(i.grants for i in vault.list() if i.name == name)
        _audit(vault, name, change="set", grants=list(grants))
    message = f"secret {name} saved; granted to: {', '.join(grants) or 'no one'}"
    report(as_json, {"name": name, "grants": list(grants)}, message)


@secrets_app.command("list")
def list_secrets(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List secrets with their grants (never their values)."""
    with _vault(ctx) as vault:
        items = vault.list()
    if as_json:
        print_json(
            [
                {
                    "name": i.name,
                    "grants": list(i.grants),
                    "created": iso(i.created_at),
                    "updated": iso(i.updated_at),
                }
                for i in items
            ]
        )
        return
    if not items:
        err.print("no secrets; add one with `rota secrets set NAME < file`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "granted to", "updated (UTC)"):
        table.add_column(column)
    for i in items:
        table.add_row(i.name, ", ".join(i.grants) or "-", when(i.updated_at))
    print_table(table)


@secrets_app.command("delete")
def delete_secret(ctx: typer.Context, name: SecretName, as_json: JsonFlag = False) -> None:
    """Delete a secret."""
    with _vault(ctx) as vault:
        vault.delete(name)
        _audit(vault, name, change="deleted")
    report(as_json, {"name": name, "deleted": True}, f"secret {name} deleted")
