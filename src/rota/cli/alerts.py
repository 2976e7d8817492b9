"""`rota alerts list|test`: recent alerts with their delivery state, and a test alert."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ..alerts.config import ALERT_KINDS
from ..alerts.delivery import send_test
from ..storage.alerts import DELIVERED, AlertRecord
from .common import ExitCode, err, fail, loaded_app, out, print_json, print_table, read_store, when

alerts_app = typer.Typer(
    help="Recent alerts and their delivery state; send a test alert.", no_args_is_help=True
)


@alerts_app.command("list")
def list_alerts(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Option(help=f"Only this kind: {', '.join(ALERT_KINDS)}."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Recent alerts, newest first: one line per alert and sink."""
    if kind is not None and kind not in ALERT_KINDS:
        fail(
            f"--kind {kind!r} is not a kind of alert; use one of {', '.join(ALERT_KINDS)}",
            code=ExitCode.USAGE,
        )
    with read_store(ctx) as store:
        found = store.alerts(limit=limit, kind=kind)
    if as_json:
        print_json([_json(a) for a in found])
        return
    if not found:
        err.print("no alerts")
        return
    table = Table(box=None, header_style="bold")
    for column in ("raised", "kind", "subject", "sink", "state", "tries", "text / last error"):
        table.add_column(column)
    for a in found:
        detail = a.text if a.state == DELIVERED or not a.last_error else a.last_error
        table.add_row(
            when(a.created_at), a.kind, a.subject, a.sink, a.state, str(a.attempts), detail[:120]
        )
    print_table(table)


@alerts_app.command("test")
def test_alert(
    ctx: typer.Context,
    sink: Annotated[
        str | None, typer.Option(help="Only this sink (its name); default: every sink.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send a test alert to the app's sinks now, and say whether each accepted it."""
    with loaded_app(ctx) as app:
        sent = send_test(app.alert_policy, app.store, app.clock, sink)
    if as_json:
        print_json([_json(a) for a in sent])
        if any(a.state != DELIVERED for a in sent):
            raise typer.Exit(ExitCode.FAILED)
        return
    for alert in sent:
        if alert.state == DELIVERED:
            out.print(f"{alert.sink}: delivered")
        else:
            err.print(f"{alert.sink}: failed: {alert.last_error}")
    if any(a.state != DELIVERED for a in sent):
        fail("a test alert was not delivered", code=1)


def _json(a: AlertRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "key": a.key,
        "kind": a.kind,
        "subject": a.subject,
        "sink": a.sink,
        "text": a.text,
        "detail": dict(a.detail),
        "created_at": a.created_at,
        "state": a.state,
        "attempts": a.attempts,
        "last_error": a.last_error,
        "delivered_at": a.delivered_at,
        "run_id": a.run_id,
    }
