"""`rota serve`: the HTTP API of the user's app (webhooks at POST /hooks/{name}, /healthz).

`rota dev` serves the same API next to its worker; the options and the banner live here.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.text import Text

from ..api import ApiServer
from ..api.dashboard.sessions import LOGIN_CODE_TTL_S, login_link
from ..api.server import DEFAULT_HOST, DEFAULT_PORT
from ..app import App
from ..jobs import webhooks
from .common import (
    LogFormat,
    LogFormatOption,
    err,
    loaded_app,
    log_to_stderr,
    notice,
    on_stop_signals,
    out,
)

Host = Annotated[
    str,
    typer.Option(help="Address to listen on; 0.0.0.0 for every interface (mind who can reach it)."),
]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")]


def serve(
    ctx: typer.Context,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    log_format: LogFormatOption = LogFormat.HUMAN,
) -> None:
    """Serve the HTTP API: webhook deliveries at POST /hooks/{name}, and GET /healthz."""
    with loaded_app(ctx) as app:
        app.store.schema_version()  # open (and migrate) now: a bad database fails here, not later
        server = ApiServer(app, host, port)
        server.bind()
        announce(app, server)
        with log_to_stderr(log_format):
            asyncio.run(_serve_until_signalled(server))
        out.print("API stopped")


def announce(app: App, server: ApiServer, *, dev: bool = False) -> None:
    """Where the API listens and what it accepts, with a warning for each missing secret."""
    out.print(f"rota API on {server.url} ({app.database_url.redacted()})")
    announce_dashboard(app, server, dev=dev)
    hooks = app.webhooks()
    if not hooks:
        out.print(
            Text(
                "no webhooks defined (add a trigger=on_webhook(...) to a job); "
                "serving GET /healthz only",
                style="dim",
            )
        )
    for name, hook in sorted(hooks.items()):
        jobs = sorted(d.name for d in app.definitions.values() if name in webhooks([d]))
        out.print(f"  {hook.describe()} -> {', '.join(jobs)}")
        if hook.secret_env and not os.environ.get(hook.secret_env, "").strip():
            err.print(
                Text(
                    f"warning: ${hook.secret_env} is not set, so deliveries to webhook "
                    f"{name!r} are refused (500) until it is",
                    style="yellow",
                )
            )


def announce_dashboard(app: App, server: ApiServer, *, dev: bool) -> None:
    """The dashboard's address with a one-time sign-in link (as Jupyter prints one). `rota
    dev` makes a local admin user `dev` for it when the database has no admin."""
    link = login_link(app.store, server.url, app.clock.now(), make_dev_admin=dev)
    if link is None:
        out.print(
            f"dashboard on {server.url}/ (sign in with an API token: `rota tokens create NAME`)"
        )
        return
    url, principal, made = link
    minutes = round(LOGIN_CODE_TTL_S / 60)
    out.print(f"dashboard on {server.url}/ ; sign in as {principal} (once, within {minutes} min):")
    out.print(f"  {url}", soft_wrap=True)
    if made:
        out.print(
            Text(
                f"made a local admin user {principal!r} for this link: the database had no admin",
                style="dim",
            )
        )


async def _serve_until_signalled(server: ApiServer) -> None:
    def first(name: str) -> None:
        notice(
            f"{name}: stopping; requests in progress get up to {server.graceful_s:g}s "
            "to finish (signal again to stop now)"
        )
        server.stop()

    def again(name: str, signum: int) -> None:
        notice(f"{name} again: stopping now")
        server.stop(now=True)

    with on_stop_signals(first, again):
        await server.serve()
