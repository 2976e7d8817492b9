"""`rota db migrate`: bring the database schema to the version this rota needs."""

from __future__ import annotations

import typer

from ..storage import SqlStore
from .common import out, store_url

db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@db_app.command("migrate")
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade rota's tables; safe to run again, refuses a newer schema."""
    store = SqlStore(store_url(ctx))
    try:
        before, after = store.migrate()
    finally:
        store.close()
    where = store.url.redacted()
    if before == after:
        out.print(f"{where}: schema already at version {after}; nothing to do")
    else:
        out.print(f"{where}: migrated schema from version {before} to {after}")
