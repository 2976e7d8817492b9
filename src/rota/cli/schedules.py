"""`rota scheduler` and `rota schedules list|pause|resume|backfill|ticks`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..clock import iso
from ..errors import ConfigError
from ..identity import admin
from ..model import Tick
from ..scheduler import (
    BackfillPlan,
    Scheduler,
    ScheduleView,
    audit_backfill,
    set_paused,
    tick_json,
)
from .common import (
    LogFormat,
    LogFormatOption,
    MetricsHost,
    MetricsPort,
    err,
    loaded_app,
    log_to_stderr,
    metrics_server,
    on_stop_signals,
    out,
    print_json,
    print_table,
    read_store,
    when,
)

schedules_app = typer.Typer(help="Inspect and manage schedules.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Name = Annotated[str, typer.Argument(help="The schedule's name (see `rota schedules list`).")]


def scheduler(
    ctx: typer.Context,
    max_sleep: Annotated[
        float, typer.Option(min=0.01, help="Longest wait between passes, in seconds.")
    ] = 1.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    log_format: LogFormatOption = LogFormat.HUMAN,
) -> None:
    """Turn the app's schedules into runs until SIGTERM or Ctrl-C (run any number)."""
    with loaded_app(ctx) as app:
        s = Scheduler(app, max_sleep_s=max_sleep)
        if not s.specs and not app.notify_channels():
            raise ConfigError(
                "the app has no time or on_notify triggers; give a job "
                "schedule=cron('*/5 * * * *') or every('30s')"
            )
        out.print(
            f"rota scheduler {s.id} on {app.database_url.redacted()}: {', '.join(sorted(s.specs))}"
        )
        # notify and schedule code may read secrets and log them: log_to_stderr redacts
        with metrics_server(app, metrics_host, metrics_port), log_to_stderr(log_format):
            asyncio.run(_until_signalled(s))
        out.print(f"scheduler {s.id} stopped")


async def _until_signalled(s: Scheduler) -> None:
    with on_stop_signals(lambda name: s.stop()):
        await s.run()


@schedules_app.command("list")
def list_schedules(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, max=20, help="Next fire times to show.")] = 3,
    as_json: JsonFlag = False,
) -> None:
    """Each schedule with its next fire times (in its zone and UTC), last tick and state."""
    with loaded_app(ctx) as app:
        items = [_item(view) for view in Scheduler(app).overview(count)]
    if as_json:
        print_json(items)
        return
    if not items:
        err.print("no schedules: give a job schedule=cron(...) or every(...)")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "trigger", "state", "next (zone)", "next (UTC)", "last tick"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item["name"],
            item["trigger"],
            item["state"],
            "\n".join(item["next_local"]) or "-",
            "\n".join(t.replace("T", " ")[:19] for t in item["next_utc"]) or "-",
            item["last_tick"] or "-",
        )
    print_table(table)


_STATES = {
    "unregistered": "not registered yet (start a scheduler)",
    "not_in_code": "not in this app's code",
}


def _item(view: ScheduleView) -> dict[str, Any]:
    return {
        "name": view.name,
        "job": view.job,
        "trigger": view.trigger,
        "state": _STATES.get(view.state, view.state),
        "next_local": [f.isoformat() for f in view.next_fires],
        "next_utc": [iso(f.timestamp()) for f in view.next_fires],
        "last_tick": _tick_text(view.last_tick),
    }


def _tick_text(tick: Tick | None) -> str | None:
    if tick is None:
        return None
    if tick.outcome == "enqueued":
        return f"{when(tick.fire_at)} run {tick.run_id}"
    return f"{when(tick.fire_at)} skipped x{tick.ticks} ({tick.reason})"


@schedules_app.command("pause")
def pause(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Stop a schedule from firing; its ticks are recorded as skipped (paused)."""
    _set_paused(ctx, name, True, as_json)


@schedules_app.command("resume")
def resume(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Fire again from now on; ticks missed while paused are not run."""
    _set_paused(ctx, name, False, as_json)


def _set_paused(ctx: typer.Context, name: str, paused: bool, as_json: bool) -> None:
    with read_store(ctx) as store:
        set_paused(store, name, paused, datetime.now(UTC).timestamp(), admin.cli_actor())
    if as_json:
        print_json({"schedule": name, "paused": paused})
    else:
        out.print(f"schedule {name} {'paused' if paused else 'resumed'}")


@schedules_app.command("ticks")
def ticks(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this schedule.")] = None,
    skipped: Annotated[
        bool, typer.Option("--skipped", help="Only ticks that did not run.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Every decision about a fire time: the run it became, or why it was skipped."""
    with read_store(ctx) as store:
        rows = store.ticks(name, outcome="skipped" if skipped else None, limit=limit)
    if as_json:
        print_json([tick_json(t) for t in rows])
        return
    table = Table(box=None, header_style="bold")
    for column in ("schedule", "fire time (UTC)", "to", "ticks", "outcome", "reason", "run"):
        table.add_column(column)
    for t in rows:
        table.add_row(
            t.schedule,
            when(t.fire_at),
            when(t.last_fire_at) if t.ticks > 1 else "",
            str(t.ticks),
            t.outcome,
            t.reason or "",
            t.run_id or "",
        )
    print_table(table)


@schedules_app.command("backfill")
def backfill(
    ctx: typer.Context,
    name: Name,
    start: Annotated[
        datetime, typer.Option("--from", help="First fire time (UTC unless an offset is given).")
    ],
    end: Annotated[datetime, typer.Option("--to", help="End, exclusive.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what it would enqueue; enqueue nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a run for every fire time in [--from, --to) that has none yet."""
    start, end = _aware(start), _aware(end)
    if end <= start:
        raise ConfigError("--to must be after --from, e.g. --from 2026-01-01 --to 2026-01-02")
    with loaded_app(ctx) as app:
        s = Scheduler(app)
        if dry_run:
            plan = s.plan_backfill(name, start, end, limit=DRY_RUN_LIMIT)
            if as_json:
                print_json(_plan_json(plan, start, end))
            else:
                _preview(plan, start, end)
            return
        with Progress(
            TextColumn(f"backfill {name}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=as_json,
        ) as progress:
            task = progress.add_task("backfill", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            created = s.backfill(name, start, end, progress=report)
        audit_backfill(app.store, admin.cli_actor(), name, start, end, created)
    if as_json:
        window = {"from": iso(start.timestamp()), "to": iso(end.timestamp())}
        print_json({"schedule": name, **window, "enqueued": created, "dry_run": False})
        return
    out.print(
        f"backfill {name}: {created} run(s) enqueued for {iso(start.timestamp())} .. "
        f"{iso(end.timestamp())} (fire times that already had a run were left alone)"
    )


DRY_RUN_LIMIT = 1_000_000  # fire times a dry run counts before it says "more than"
SHOWN = 20  # fire times a dry run lists


def _preview(plan: BackfillPlan, start: datetime, end: datetime) -> None:
    todo = plan.todo
    more = "more than " if len(plan.fires) > DRY_RUN_LIMIT else ""
    out.print(
        f"backfill {plan.schedule} (dry run): would enqueue {more}{len(todo)} run(s) for "
        f"{iso(start.timestamp())} .. {iso(end.timestamp())}; {len(plan.existing)} fire "
        "time(s) already have a run and would be left alone"
    )
    for fire in todo[:SHOWN]:
        out.print(f"  {iso(fire.timestamp())}")
    if len(todo) > SHOWN:
        out.print(f"  ... and {len(todo) - SHOWN} more")


def _plan_json(plan: BackfillPlan, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "schedule": plan.schedule,
        "from": iso(start.timestamp()),
        "to": iso(end.timestamp()),
        "dry_run": True,
        "would_enqueue": len(plan.todo),
        "more": len(plan.fires) > DRY_RUN_LIMIT,
        "existing": len(plan.existing),
        "fire_times": [iso(f.timestamp()) for f in plan.todo[:SHOWN]],
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
