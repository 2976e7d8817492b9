"""`rota routines list|show|validate|fire|schema`: routine files (docs/routines.md).

The app's module loads its routines (`app.load_routines()`); `validate` checks the files
again and lists every problem (exit 1 when there is one), so it works on files the app could
not load. `schema` prints the JSON Schema of the front matter for editors.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..identity.directory import directory_for
from ..routines import RoutineNotFound, RunDropped, json_schema
from ..routines.overview import details, now_utc, summary
from .common import ExitCode, err, fail, loaded_app, out, print_json, print_table
from .cost import usd

routines_app = typer.Typer(
    help="Routine files: prompts with triggers, run as a user or a service account.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Name = Annotated[str, typer.Argument(help="The routine's name (see `rota routines list`).")]


@routines_app.command("list")
def list_routines(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The routines the app loaded, and the files it could not load."""
    with loaded_app(ctx) as app:
        rows = [summary(r) for r in app.routines.loaded.values()]
        problems = [str(p) for p in app.routines.problems]
    if as_json:
        print_json({"routines": rows, "problems": problems})
        return
    if rows:
        table = Table(box=None, header_style="bold")
        for column in ("name", "kind", "runs as", "model", "triggers", "billing"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["name"],
                r["kind"],
                r["runs_as"],
                r["model"],
                "; ".join(r["triggers"]) or "-",
                r["billing"] or "-",
            )
        print_table(table)
    else:
        err.print("no routines loaded (the app module loads them: app.load_routines())")
    for problem in problems:
        err.print(f"not loaded: {problem}")


@routines_app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Who the routine runs as, its scopes, triggers and caps, and what it cost in the last
    30 days under its plan and under every other plan the app declares."""
    with loaded_app(ctx) as app:
        try:
            routine = app.routines.get(name)
        except RoutineNotFound as exc:
            fail(str(exc), code=ExitCode.NOT_FOUND)
        principal = directory_for(app.store).get(routine.spec.principal)
        found = details(
            routine, principal, app.routines.catalog, app.store, now_utc(app.clock.now())
        )
    if as_json:
        print_json(found)
        return
    who = (
        "personal routine of user"
        if found["kind"] == "personal"
        else "managed agent, service account"
    )
    out.print(f"[bold]{found['name']}[/bold]: {who} {found['runs_as']}")
    if not found["principal_exists"]:
        out.print(f"  principal {found['runs_as']!r} does not exist: its runs are refused")
    elif found["principal_disabled"]:
        out.print(f"  principal {found['runs_as']!r} is disabled: its runs are refused")
    out.print(f"  scopes: {', '.join(found['scopes']) or '(none)'}")
    out.print(f"  model: {found['model']}  mode: {found['mode']}")
    out.print(f"  triggers: {'; '.join(found['triggers']) or '(none)'}")
    out.print(f"  tools: {', '.join(found['tools']) or '(none)'}")
    if found["caps"] or found["cooldown"]:
        caps = {k: v for k, v in (found["caps"] or {}).items() if v is not None and v is not False}
        out.print(f"  caps: {caps}  cooldown: {found['cooldown'] or '-'}")
    cost = found["cost"]
    out.print(
        f"  runs in the last 30 days: {cost['runs']}; billed under: {cost['billed_under'] or '-'}"
    )
    for plan in cost["plans"]:
        mark = " (billed)" if plan["billed"] else ""
        dropped = f", {plan['dropped_runs']} runs over its caps" if plan["dropped_runs"] else ""
        total = usd(Decimal(plan["total_usd"]))
        out.print(f"    {plan['plan']} ({plan['kind']}): {total}{dropped}{mark}")
    if not cost["plans"]:
        out.print("    no plans declared: app.routines.plan(...) to compare billing models")


@routines_app.command("validate")
def validate(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(help="The routines directory (default: the app's)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every routine file; list every problem as file:line:column (exit 1 if any)."""
    with loaded_app(ctx) as app:
        store = app.store
        loaded = app.routines.check_files(
            app,
            directory,
            principals={p.name: p.kind for p in store.principals()},
            secrets=[r.name for r in store.secrets()],
        )
    names = [r.name for r in loaded.routines]
    if as_json:
        problems = [p.__dict__ for p in loaded.problems]
        print_json({"ok": not loaded.problems, "routines": names, "problems": problems})
    else:
        for problem in loaded.problems:
            out.print(str(problem), highlight=False, markup=False)
        good = f"{len(names)} routine{'s' if len(names) != 1 else ''} valid"
        err.print(f"{good}, {len(loaded.problems)} problem(s)")
    if loaded.problems:
        raise typer.Exit(ExitCode.FAILED)


@routines_app.command("fire")
def fire(
    ctx: typer.Context,
    name: Name,
    text: Annotated[
        str | None, typer.Option("--text", "-t", help="Appended to the prompt for this run.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue one run of the routine now (caps apply), as its own principal."""
    with loaded_app(ctx) as app:
        try:
            app.routines.get(name)
            handle = app.run_now(name, None if text is None else {"text": text})
        except RoutineNotFound as exc:
            fail(str(exc), code=ExitCode.NOT_FOUND)
        except RunDropped as exc:
            fail(str(exc), code=ExitCode.REFUSED)
        run = handle.get()
    if as_json:
        print_json({"run_id": run.id, "name": name, "state": run.state.value})
        return
    out.print(f"run {run.id} of {name} enqueued")


@routines_app.command("schema")
def schema(
    as_json: Annotated[bool, typer.Option("--json", help="The schema is JSON either way.")] = True,
) -> None:
    """Print the JSON Schema of a routine file's front matter (for editors)."""
    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))
