"""`rota run NAME`: enqueue one run of a job or workflow through the user's app."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from ..alerts.watchdog import INTERNAL_PREFIX
from ..identity.admin import cli_actor
from ..identity.audit import record
from ..model import RunState
from ..serialization import parse_json_text
from ..storage.audit import RUN_REQUESTED
from .common import ExitCode, compact, err, fail, loaded_app, out, print_json
from .runs import run_json


def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The job or workflow to run.")],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload", "-p", help="""The payload as JSON, e.g. '{"customer": "acme"}'."""
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            "-k",
            help="Enqueue at most once per key; a repeat returns the existing run.",
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Higher runs first (default: the job's priority).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Wait for the run to end; a worker must be running elsewhere."
        ),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="With --wait: give up after this many seconds.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Enqueue a run now and print its id (with --wait, its result)."""
    if name.startswith(INTERNAL_PREFIX):  # as POST /api/jobs/{name}/runs refuses it
        fail(
            f"{name!r} is one of rota's own jobs: rota enqueues it with a payload only rota "
            "makes (`rota alerts test` sends a test alert)",
            code=ExitCode.REFUSED,
        )
    value = parse_json_text(payload, what="--payload") if payload is not None else None
    actor = cli_actor()
    with loaded_app(ctx) as app:
        handle = app.run_now(
            name, value, idempotency_key=idempotency_key, priority=priority, actor=actor
        )
        if handle.created:
            record(
                app.store,
                actor.name,
                RUN_REQUESTED,
                actor_kind=actor.kind,
                subject=name,
                run_id=handle.id,
            )
        if not as_json:
            if handle.created:
                out.print(f"enqueued run {handle.id} ({name})")
            else:
                out.print(
                    f"run {handle.id} ({name}) already exists for idempotency key "
                    f"{idempotency_key!r}; not enqueued again"
                )
        if not wait:
            if as_json:
                print_json({"id": handle.id, "name": name, "created": handle.created})
            return
        final = handle.get()
        if not final.state.finished and not as_json:
            err.print(
                Text(
                    "waiting for the run to end (a worker must be running: rota worker)",
                    style="dim",
                )
            )
        try:
            final = final if final.state.finished else handle.wait(timeout, poll=0.25)
        except TimeoutError:
            fail(
                f"run {handle.id} is still {handle.state} after {timeout:g}s; "
                "is a worker running? (rota worker)"
            )
    _report(final, handle.created, as_json)


def _report(run: Any, created: bool, as_json: bool) -> None:
    if as_json:  # the run's own record says how it failed: one JSON document, exit 1
        print_json({**run_json(run), "created": created})
        if run.state != RunState.SUCCEEDED:
            raise typer.Exit(ExitCode.FAILED)
        return
    if run.state == RunState.SUCCEEDED:
        out.print(Text(compact(run.result, limit=100_000)))
    if run.state != RunState.SUCCEEDED:
        error = run.error or {}
        detail = f"{error.get('type', '')}: {error.get('message', 'no error recorded')}"
        fail(f"run {run.id} ended {run.state}: {detail}")
