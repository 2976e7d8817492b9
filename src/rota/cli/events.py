"""`rota events emit|list|replay|rejected`: emit an event; what came in (app.emit, webhooks,
the API) and what was refused.

`list` and `rejected` read the store only; `emit` and `replay` load the user's app, because
the app's triggers decide which jobs an event starts.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..clock import iso
from ..errors import EventNotFound
from ..model import Rejection
from ..serialization import parse_json_text
from ..storage.run_views import event_json
from .common import compact, err, fail, loaded_app, out, print_json, print_table, read_store, when

events_app = typer.Typer(
    help="Inspect stored events and refused webhook deliveries; replay an event.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Limit = Annotated[int, typer.Option(min=1, help="At most this many, newest first.")]


@events_app.command("list")
def list_events(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Only events with this name (a webhook's name)."),
    ] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """List stored events (from app.emit and webhooks), newest first."""
    with read_store(ctx) as store:
        events = store.events(name, limit)
    if as_json:
        print_json([event_json(e) for e in events])
        return
    if not events:
        err.print("no events" + (f" named {name!r}" if name else ""))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True)
    for column in ("name", "source", "idempotency key", "created (UTC)", "payload"):
        table.add_column(column)
    for event in events:
        table.add_row(
            event.id,
            event.name,
            event.source,
            event.idempotency_key or "-",
            when(event.created_at),
            Text(compact(event.payload, 60)),
        )
    print_table(table)


@events_app.command("replay")
def replay(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's id (see `rota events list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Enqueue the runs a stored event triggers, again (e.g. after fixing a bug)."""
    with loaded_app(ctx) as app:
        try:
            event = app.store.get_event(event_id)
        except EventNotFound as exc:
            fail(f"{exc}; see `rota events list`", code=2)
        emitted = app.replay_event(event.id)
        runs = [app.get_run(handle.id) for handle in emitted.runs]
    if as_json:
        print_json(
            {
                "event_id": event.id,
                "name": event.name,
                "runs": [{"id": run.id, "name": run.name} for run in runs],
            }
        )
    elif runs:
        enqueued = ", ".join(f"run {run.id} ({run.name})" for run in runs)
        out.print(f"replayed event {event.id} ({event.name}): enqueued {enqueued}")
    if not runs:
        err.print(
            Text(
                f"event {event.id} ({event.name}, from {event.source}) triggers no job or "
                "workflow of this app, so nothing was enqueued; is --app the app that "
                "defines its trigger?",
                style="yellow",
            )
        )


@events_app.command("rejected")
def rejected(
    ctx: typer.Context,
    hook: Annotated[
        str | None, typer.Option("--hook", help="Only deliveries to this webhook.")
    ] = None,
    limit: Limit = 50,
    as_json: JsonFlag = False,
) -> None:
    """List refused webhook deliveries (bad signature, stale, too large, ...), newest first."""
    with read_store(ctx) as store:
        rows = store.rejections(hook, limit)
    if as_json:
        print_json([rejection_json(r) for r in rows])
        return
    if not rows:
        err.print("no refused deliveries" + (f" to webhook {hook!r}" if hook else ""))
        return
    table = Table(box=None, header_style="bold")
    for column in ("received (UTC)", "hook", "status", "reason", "delivery id"):
        table.add_column(column, no_wrap=column != "hook")
    table.add_column("size", justify="right")
    table.add_column("message")
    for r in rows:
        table.add_row(
            when(r.received_at),
            r.hook,
            Text(str(r.status), style="red" if r.status >= 500 else "yellow"),
            r.reason,
            r.delivery_id or "-",
            size(r.body_bytes),
            Text(r.message),
        )
    print_table(table)


# -- shapes -----------------------------------------------------------------------------


def rejection_json(r: Rejection) -> dict[str, Any]:
    return {
        "id": r.id,
        "hook": r.hook,
        "status": r.status,
        "reason": r.reason,
        "message": r.message,
        "delivery_id": r.delivery_id,
        "body_bytes": r.body_bytes,
        "received_at": iso(r.received_at),
    }


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


@events_app.command("emit")
def emit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The event's name, e.g. billing.event.")],
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", help="""The payload as JSON, e.g. '{"id": 7}'."""),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            "-k",
            help="Store the event at most once per key; a repeat enqueues nothing.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Emit an event, as app.emit does: stored, and a run enqueued for every job it
    triggers."""
    value = parse_json_text(payload, what="--payload") if payload is not None else None
    with loaded_app(ctx) as app:
        emitted = app.emit(name, value, idempotency_key=idempotency_key, source="cli")
        runs = [app.get_run(handle.id) for handle in emitted.runs]
    if as_json:
        print_json(
            {
                "event_id": emitted.event_id,
                "name": name,
                "created": emitted.created,
                "runs": [{"id": run.id, "name": run.name} for run in runs],
            }
        )
        return
    if not emitted.created:
        out.print(
            f"event {emitted.event_id} ({name}) was stored before with idempotency key "
            f"{idempotency_key!r}; nothing was enqueued again"
        )
        return
    enqueued = ", ".join(f"run {run.id} ({run.name})" for run in runs) or "no run"
    out.print(f"emitted event {emitted.event_id} ({name}): enqueued {enqueued}")
