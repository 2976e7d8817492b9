"""`rota audit list|verify`: read the hash-chained audit log and check it for tampering.

Like `rota runs`, these need no user app, only the database.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..clock import system_clock
from ..durations import ago_or_time
from ..identity.audit import verify_chain
from .common import compact, err, out, print_json, print_table, read_store, when

audit_app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@audit_app.command("list")
def list_records(
    ctx: typer.Context,
    principal: Annotated[
        str | None,
        typer.Option("--principal", "-p", help="Only records by this actor or on its behalf."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only records since: a duration ago (1h, 2d) or ISO time."),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", "-a", help="Only this action (e.g. tool.denied, approval.*)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List audit records, newest first: who acted (a human or a machine), on whose behalf,
    and what they did."""
    start = parse_since(since) if since else None
    with read_store(ctx) as store:
        records = store.audit_records(principal=principal, since=start, action=action, limit=limit)
    if as_json:
        print_json([r.to_json() for r in records])
        return
    if not records:
        err.print("no audit records match")
        return
    table = Table(box=None, header_style="bold")
    columns = ("seq", "at (UTC)", "actor", "actor kind", "on behalf of", "action", "subject")
    for column in (*columns, "run", "detail"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.seq),
            when(r.at),
            r.actor,
            r.actor_kind,
            r.on_behalf_of or "-",
            r.action,
            r.subject or "-",
            r.run_id or "-",
            Text(compact(r.detail, 120)),
        )
    print_table(table)


@audit_app.command("verify")
def verify(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the chain: exit 0 when intact, 1 naming every edited or deleted record."""
    with read_store(ctx) as store:
        report = verify_chain(store)
    if as_json:
        print_json(report.to_json())
    elif report.ok:
        head = f"; head seq {report.head.seq} {report.head.hash}" if report.head else ""
        out.print(f"audit log intact: {report.checked} records checked{head}")
    else:
        for problem in report.problems:
            err.print(Text(problem.message, style="red"))
        err.print(
            Text(f"audit log FAILED verification: {len(report.problems)} problem(s)", style="red")
        )
    if not report.ok:
        raise typer.Exit(1)


def parse_since(text: str) -> float:
    """A duration ago ("1h", "30m", "2d") or an ISO-8601 time (UTC when it has no offset)."""
    return ago_or_time(text, system_clock.now())
