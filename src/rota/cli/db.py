"""`rota db migrate`: bring the database schema to the version this rota needs, and store
the principals the app declares in code, so that `rota principals` sees them at once.
`rota db prune`: delete finished runs past their retention (rota.retention)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from ..clock import system_clock
from ..errors import ConfigError
from ..identity import admin
from ..jobs import retention_seconds
from ..retention import RETENTION_ENV, PruneReport, RetentionPolicy, default_retention, prune
from ..storage import SqlStore
from .common import JsonFlag, out, print_json, read_store, store_url
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


@db_app.command("prune")
def prune_command(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Prune runs finished longer ago than this (30d, 12h, 2w; at least 1h), and "
            f"events and audit records as old. [default: the app's retention, ${RETENTION_ENV}]",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="Runs deleted per transaction.")
    ] = 500,
    as_json: JsonFlag = False,
) -> None:
    """Delete finished runs past their retention, with their steps, usage and events; never
    a waiting, enqueued or running one. Cost reports keep their totals (daily roll-ups) and
    `rota audit verify` keeps passing (the chain restarts from a checkpoint). A job's own
    retention (@app.job(retention=...)) wins over --older-than for its runs."""
    default = retention_seconds(older_than, what="--older-than") if older_than else None
    policy = _policy(ctx, default)
    with read_store(ctx) as store:
        report = prune(store, policy, system_clock.now(), dry_run=dry_run, batch=batch)
        where = store.url.redacted()
    if as_json:
        print_json({"database": where, **report.to_json()})
        return
    out.print(f"{where}: {_summary(report)}")


def _policy(ctx: typer.Context, default: float | None) -> RetentionPolicy:
    app = declaring_app(ctx)
    policy = app.retention_policy() if app else RetentionPolicy(default_retention(None))
    if default is not None:
        policy = replace(policy, default_s=default)
    if not policy.active:
        raise ConfigError(
            "nothing says how long to keep runs: pass --older-than (e.g. 30d), or set "
            f"App(retention=...), @app.job(retention=...) or ${RETENTION_ENV}"
        )
    return policy


def _summary(report: PruneReport) -> str:
    verb = "would prune" if report.dry_run else "pruned"
    text = f"{verb} {report.runs} finished runs"
    counted = {k: n for k, n in report.per_name.items() if n}
    if set(counted) - {"(default)"}:  # some went by a job's own retention: say which
        names = sorted(counted.items(), key=lambda kv: (kv[0] == "(default)", kv[0]))
        shown = ", ".join(f"{'others' if k == '(default)' else k}: {n}" for k, n in names)
        text += f" ({shown})"
    text += f", {report.events} events, {report.audit_records} audit records"
    if kept := {t: n for t, n in report.records.items() if n}:  # ticks, alerts, ...
        text += " and " + ", ".join(f"{n} rows of {t}" for t, n in sorted(kept.items()))
    if report.checkpoint_seq is not None:
        text += f"; the audit chain now starts after seq {report.checkpoint_seq}"
    return text
