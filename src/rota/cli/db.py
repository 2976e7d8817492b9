"""`rota db migrate`: bring the database schema to the version this rota needs, and store
the principals the app declares in code, so that `rota principals` sees them at once."""

from __future__ import annotations

import typer

from ..identity import admin
from ..storage import SqlStore
from .common import JsonFlag, out, print_json, store_url
from .principals import declaring_app

db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@db_app.command("migrate")
def migrate(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Create or upgrade rota's tables; safe to run again, refuses a newer schema. With an
    app (--app, ROTA_APP, or app:app when it exists), also store the principals it declares
    with app.principal(...); a principal disabled with `rota principals disable` stays so."""
    app = declaring_app(ctx)  # first: an --app that does not load leaves the database alone
    store = SqlStore(store_url(ctx))
    try:
        before, after = store.migrate()
        synced = admin.declare_all(store, app.principals.values()) if app else []
    finally:
        store.close()
    where = store.url.redacted()
    if as_json:
        synced_names = [p.name for p in synced]
        print_json(
            {"database": where, "from": before, "to": after, "principals_synced": synced_names}
        )
        return
    if before == after:
        out.print(f"{where}: schema already at version {after}; nothing to do")
    else:
        out.print(f"{where}: migrated schema from version {before} to {after}")
    if synced:
        names = ", ".join(p.name for p in synced)
        out.print(f"{where}: in sync with the principals declared by the app: {names}")
