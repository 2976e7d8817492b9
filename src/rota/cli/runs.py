"""`rota runs list|show|cancel|retry|replay`: read and manage runs straight from the store.

These commands need no user app, only the database, so an operator can use them anywhere;
except `replay`, which re-runs an agent run with the app's current code.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..agentloop.replay import replay_run
from ..agentloop.trace import agent_trace
from ..clock import system_clock
from ..model import Run, RunFilter, RunState, Wait
from ..storage.capped import capped_json
from ..storage.run_views import (
    chain,
    duration,
    open_waits,
    run_json,
    step_json,
    step_offset,
    waits_json,
    with_wait,
)
from .common import (
    compact,
    err,
    loaded_app,
    out,
    print_json,
    print_table,
    read_store,
    span,
    state_text,
    when,
)
from .runs_chain import chain_json, chain_text
from .runs_waits import describe_wait, step_note

runs_app = typer.Typer(help="Inspect and manage runs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RunId = Annotated[str, typer.Argument(help="The run's id (see `rota runs list`).")]


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    state: Annotated[
        list[RunState] | None,
        typer.Option(
            "--state",
            "-s",
            case_sensitive=False,
            help="Only runs in this state (repeat for several).",
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option("--name", "-n", help="Only runs of this job or workflow (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
    dropped: Annotated[
        bool,
        typer.Option(
            "--dropped", help="List the runs a cap dropped or deferred, with their reasons."
        ),
    ] = False,
) -> None:
    """List runs, newest first."""
    if dropped:
        _list_capped(ctx, name or [], limit, as_json)
        return
    flt = RunFilter(tuple(s.value for s in state or ()), tuple(name or ()), limit)
    with read_store(ctx) as store:
        runs = store.list_runs(flt)
        waiting = open_waits(store.waits([r.id for r in runs if r.state == RunState.WAITING]))
    if as_json:
        print_json([with_wait(run_json(r), waiting.get(r.id)) for r in runs])
        return
    if not runs:
        err.print("no runs match")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("state", no_wrap=True)
    for column in ("attempt", "trigger", "principal", "created (UTC)"):
        table.add_column(column)
    table.add_column("duration", justify="right")
    if waiting:
        table.add_column("waiting for")
    for run in runs:
        wait = waiting.get(run.id)
        table.add_row(
            run.id,
            run.name,
            state_text(run.state.value),
            str(run.attempt),
            run.trigger,
            run.principal or "-",
            when(run.created_at),
            span(duration(run)),
            *([describe_wait(wait) if wait else ""] if waiting else []),
        )
    print_table(table)


def _list_capped(ctx: typer.Context, names: list[str], limit: int, as_json: bool) -> None:
    """The runs caps held back (rota.routines.caps), newest first."""
    with read_store(ctx) as store:
        records = store.capped_runs(names, limit=limit)
    if as_json:
        print_json([capped_json(r) for r in records])
        return
    if not records:
        err.print("no runs were dropped or deferred by a cap")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "outcome", "reason", "trigger", "principal", "at (UTC)"):
        table.add_column(column)
    table.add_column("deferred to (UTC)")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            r.outcome,
            r.reason,
            r.trigger,
            r.principal or "-",
            when(r.created_at),
            when(r.deferred_to) if r.deferred_to else "-",
        )
    print_table(table)


@runs_app.command("show")
def show(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """Show one run and the timeline of its steps (--json: with its agent trace, as
    GET /api/runs/{id} shows it)."""
    with read_store(ctx) as store:
        run = store.get_run(run_id)
        steps = store.steps(run_id)
        waits = store.waits([run_id])
        links = chain_json(store, chain(store, run))
        trace = agent_trace(steps, store.model_calls(run_id))
    wait = open_waits(waits).get(run_id) if run.state == RunState.WAITING else None
    if as_json:
        shown = with_wait(run_json(run), wait) | {"chain": links if len(links) > 1 else []}
        steps_shown = {"steps": [step_json(run, s) for s in steps], "trace": trace}
        print_json({**shown, **steps_shown} | waits_json(waits))
        return
    out.print(_details(run, resumed=bool(waits), wait=wait))
    if len(links) > 1:
        out.print(Text("escalation chain", style="bold"))
        out.print(chain_text(links, run.id), end="")
    if run.error:
        out.print(
            Text(f"error: {run.error.get('type', '')}: {run.error.get('message', '')}", style="red")
        )
        if run.error.get("traceback"):
            out.print(Text(run.error["traceback"].rstrip(), style="dim"))
    if not steps:
        out.print(Text("no steps recorded", style="dim"))
        return
    table = Table(title="steps", title_justify="left", box=None, header_style="bold")
    for column in ("#", "key", "state", "attempts"):
        table.add_column(column)
    table.add_column("start", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("error")
    for step in steps:
        offset = step_offset(run, step)
        table.add_row(
            str(step.seq),
            step.key,
            state_text(step.state),
            str(step.attempts),
            "-" if offset is None else f"+{span(offset)}",
            span(step.finished_at - step.started_at),
            step_note(step) or _error_line(step.error),
        )
    print_table(table)


@runs_app.command("cancel")
def cancel(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """Cancel a queued run now, or ask the worker running it to stop it."""
    with read_store(ctx) as store:
        run = store.cancel(run_id, system_clock.now())
    if as_json:
        print_json(run_json(run))
    elif run.state == RunState.CANCELLED:
        out.print(f"cancelled run {run.id} ({run.name})")
    else:
        out.print(
            f"cancel requested for run {run.id} ({run.name}, {run.state}); "
            "the worker running it will stop it"
        )


@runs_app.command("retry")
def retry(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """Queue a FAILED or CANCELLED run again; its completed steps are not re-executed."""
    with read_store(ctx) as store:
        run = store.retry(run_id, system_clock.now())
    if as_json:
        print_json(run_json(run))
    else:
        out.print(
            f"run {run.id} ({run.name}) is {run.state} again; "
            "completed steps keep their checkpoints"
        )


@runs_app.command("replay")
def replay(
    ctx: typer.Context,
    run_id: RunId,
    recorded_tools: Annotated[
        bool,
        typer.Option(
            "--recorded-tools", help="Return the recorded tool results instead of running tools."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-run an agent run against its recorded model responses (no provider calls) and
    report where the current code diverges. Exit 0: identical; 1: diverged; 3: unknown run;
    2: not an agent run. Tools run for real unless --recorded-tools."""
    with loaded_app(ctx) as app:
        report = replay_run(app, run_id, recorded_tools=recorded_tools)
    if as_json:
        print_json(report.to_json())
    else:
        for line in report.lines():
            out.print(Text(line))
    if not report.identical:
        raise typer.Exit(1)


# -- shapes -----------------------------------------------------------------------------


def _details(run: Run, *, resumed: bool = False, wait: Wait | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    attempts = f"attempt {run.attempt} of {run.max_attempts}"
    if resumed:  # each resume after a wait is an execution too; failures count attempts
        attempts = f"execution {run.attempt}, {run.failures} of {run.max_attempts} attempts failed"
    if run.reclaims:
        attempts += f", reclaimed {run.reclaims}x after its worker stopped responding"
    grid.add_row("run", Text(f"{run.id}  {run.name} ({run.kind})"))
    grid.add_row("state", Text.assemble(state_text(run.state.value), f"  {attempts}"))
    if wait is not None:
        grid.add_row("waiting for", describe_wait(wait))
    if run.cancel_requested and not run.state.finished:
        grid.add_row("", Text("cancel requested", style="yellow"))
    trigger = run.trigger + (f" ({run.trigger_ref})" if run.trigger_ref else "")
    grid.add_row("trigger", trigger)
    grid.add_row("principal", run.principal or "-")
    grid.add_row("priority", str(run.priority))
    if run.idempotency_key:
        grid.add_row("idempotency key", run.idempotency_key)
    grid.add_row("created", f"{when(run.created_at)} UTC")
    if run.started_at is not None:
        waited = run.started_at - run.created_at
        grid.add_row("started", f"{when(run.started_at)} UTC (queued {span(max(0.0, waited))})")
    if run.finished_at is not None:
        grid.add_row("finished", f"{when(run.finished_at)} UTC (took {span(duration(run))})")
    if run.lease_owner:
        grid.add_row("worker", run.lease_owner)
    grid.add_row("payload", Text(compact(run.payload)))
    if run.state == RunState.SUCCEEDED:
        grid.add_row("result", Text(compact(run.result)))
    return grid


def _error_line(error: dict[str, Any] | None) -> Text:
    if not error:
        return Text("")
    return Text(f"{error.get('type', '')}: {error.get('message', '')}", style="red")
