"""`rota demo`: a first real workload end to end (see rota.demo)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..demo import run_demo
from .common import err, out, print_json, settings


def demo(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=1, help="How many webhook events to process.")] = (
        10_000
    ),
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Where to run it (default: as for every command)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Process synthetic payment webhooks with retries, then show what happened."""
    summary = run_demo(database_url or settings(ctx).database_url, events, err if as_json else out)
    if as_json:
        print_json(summary)
