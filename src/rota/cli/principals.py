"""`rota principals add|list|show|grant|revoke|disable|enable`: who runs may act as.

Every change is audited as a human action by the person at the terminal (ROTA_ACTOR, else
the OS user). Principals an app declares in code (`app.principal(...)`) are synced when the
app opens its store, by `rota db migrate`, and by every command here before it reads or
changes anything (when the app can be loaded): change their scopes in code, or a grant made
here is undone at the next sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from ..app import App
from ..identity import admin
from ..identity.principals import Principal, UnknownPrincipal, make_principal, principal_json
from ..storage import SqlStore
from ..storage.base import PrincipalStore
from .common import (
    DEFAULT_APP,
    AppLoadError,
    AppNotFound,
    JsonFlag,
    app_did_not_import,
    err,
    load_app,
    print_json,
    print_table,
    read_store,
    report,
    settings,
)

principals_app = typer.Typer(
    help="Manage principals: users and service accounts, their scopes and roles.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The principal's name, as run_as names it.")]
Scopes = Annotated[
    list[str] | None,
    typer.Option("--scope", "-s", help="A scope such as billing:read (repeatable)."),
]
Roles = Annotated[
    list[str] | None,
    typer.Option("--role", "-r", help="admin, operator, viewer or approver:<group> (repeatable)."),
]


@principals_app.command("add")
def add(
    ctx: typer.Context,
    name: Name,
    kind: Annotated[
        str, typer.Option("--kind", "-k", help="user (a person) or service (a machine).")
    ] = "service",
    scope: Scopes = None,
    role: Roles = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a principal: `rota principals add svc-billing -s billing:read`."""
    wanted = make_principal(name, kind, scope or (), role or ())
    with synced_store(ctx) as store:
        created = admin.add(store, wanted, admin.cli_actor())
    message = f"{created.kind} {created.name} added; scopes: {_list(created.scopes)}"
    report(as_json, principal_json(created), message)


@principals_app.command("list")
def list_principals(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List principals with their scopes and roles."""
    with synced_store(ctx) as store:
        found = store.principals()
    if as_json:
        print_json([principal_json(p) for p in found])
        return
    if not found:
        err.print("no principals; add one with `rota principals add NAME --scope SCOPE`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "kind", "scopes", "roles", "state"):
        table.add_column(column)
    for p in found:
        state = "disabled" if p.disabled else "enabled"
        table.add_row(p.name, p.kind, _list(p.scopes), _list(p.roles), state)
    print_table(table)


@principals_app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Print one principal as JSON (always; --json is accepted for uniformity)."""
    with synced_store(ctx) as store:
        found = store.principal(name)
        if found is None:
            raise UnknownPrincipal(name, [p.name for p in store.principals()])
    print_json(principal_json(found))


@principals_app.command("grant")
def grant(
    ctx: typer.Context,
    name: Name,
    scope: Scopes = None,
    role: Roles = None,
    as_json: JsonFlag = False,
) -> None:
    """Add scopes and roles: `rota principals grant svc-billing -s billing:write`."""
    _regrant(ctx, name, scope, role, as_json, add=True)


@principals_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Name,
    scope: Scopes = None,
    role: Roles = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove scopes and roles; running agents lose them within a second."""
    _regrant(ctx, name, scope, role, as_json, add=False)


@principals_app.command("disable")
def disable(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Refuse every run as this principal and every token of it, until enabled again."""
    with synced_store(ctx) as store:
        changed = admin.set_disabled(store, name, admin.cli_actor(), True)
    message = f"principal {name} disabled: its runs are refused and its tokens rejected"
    report(as_json, principal_json(changed), message)


@principals_app.command("enable")
def enable(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Allow runs as this principal again."""
    with synced_store(ctx) as store:
        changed = admin.set_disabled(store, name, admin.cli_actor(), False)
    report(as_json, principal_json(changed), f"principal {name} enabled")


@contextmanager
def synced_store(ctx: typer.Context) -> Iterator[SqlStore]:
    """read_store, with the app's declared principals synced first, so that these commands
    see and act on them even before any process of the app has opened the store."""
    with read_store(ctx) as store:
        sync_declared(ctx, store)
        yield store


def sync_declared(ctx: typer.Context, store: PrincipalStore) -> list[Principal]:
    """Store (and audit, as rota:app) the principals the app declares in code; a disabled
    one stays disabled. No app to load: nothing is declared, nothing changes."""
    app = declaring_app(ctx, tolerant=True)
    return [] if app is None else admin.declare_all(store, app.principals.values())


def declaring_app(ctx: typer.Context, *, tolerant: bool = False) -> App | None:
    """The user's app, when there is one: --app (or ROTA_APP) must load; the implicit
    default app:app is used only when it exists, as store_url does. `tolerant`: an app
    that fails to import costs a warning line, and nothing is declared."""
    spec = settings(ctx).app_spec
    try:
        return load_app(spec or DEFAULT_APP)
    except AppLoadError as exc:
        if isinstance(exc, AppNotFound) and spec is None:
            return None
        if not tolerant:
            raise
        app_did_not_import(exc, "its declared principals are not synced")
        return None


def _regrant(
    ctx: typer.Context,
    name: str,
    scope: list[str] | None,
    role: list[str] | None,
    as_json: bool,
    *,
    add: bool,
) -> None:
    """grant (add) or revoke: at least one scope or role, changed by the person at the CLI."""
    if not scope and not role:
        verb = "grant" if add else "revoke"
        raise typer.BadParameter(f"name at least one --scope or --role to {verb}")
    with synced_store(ctx) as store:
        changed = admin.regrant(store, name, admin.cli_actor(), scope or (), role or (), add=add)
    _report(changed, as_json)


def _report(p: Principal, as_json: bool) -> None:
    report(
        as_json, principal_json(p), f"{p.name}: scopes {_list(p.scopes)}; roles {_list(p.roles)}"
    )


def _list(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "-"
