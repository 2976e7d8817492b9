"""`rota demo`: the seed's scenario end to end, offline (see rota.demo)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..demo import DemoOptions, render, run_demo
from .common import err, out, print_json


def demo(
    events: Annotated[
        int, typer.Option("--events", min=1, help="How many signed webhooks to send.")
    ] = 10_000,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Where to run it (default: a fresh rota-demo.db in a new temporary folder).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A real model for the agent, provider:name (needs ANTHROPIC_API_KEY or "
            "OPENAI_API_KEY); without it, a scripted (simulated) model.",
        ),
    ] = None,
    interactive: Annotated[
        bool,
        typer.Option("--interactive", help="Leave the approvals to you, in the dashboard."),
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after the summary.")
    ] = True,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The API's port; 0 picks a free one.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Payment webhooks through a job, exceptions to an agent, large entries to a human,
    a shadow sample; then what each way of doing it costs, and the dashboard."""
    options = DemoOptions(events, database_url, model, interactive, serve, port)

    def show(summary: dict[str, Any]) -> None:
        if as_json:
            print_json(summary)
        else:
            out.print(render(summary))

    run_demo(options, err if as_json else out, show)
