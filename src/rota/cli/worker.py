"""`rota worker` and `rota dev`: execute runs of the user's app until a signal says stop.

The first SIGTERM or SIGINT stops gracefully: no new claims, running runs get the grace period
to finish, and whatever is still running then goes back to the queue. A second signal stops
at once: runs still held are handed back to the queue, then the process exits; an interrupted
step runs again elsewhere (at-least-once), completed steps keep their checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Annotated

import typer

from ..api import ApiServer
from ..api.server import DEFAULT_HOST, DEFAULT_PORT
from ..app import App
from ..errors import ConfigError
from ..scheduler import Scheduler
from ..storage import SqlStore
from ..worker import Worker, WorkerOptions, WorkerStats
from .common import (
    LogFormat,
    LogFormatOption,
    MetricsHost,
    MetricsPort,
    loaded_app,
    log_to_stderr,
    metrics_server,
    notice,
    on_stop_signals,
    out,
)
from .dev_support import RunLines, free_port, record_app_files, runs_told_by_run_lines
from .reload import supervise
from .serve import Host, Port, announce

Concurrency = Annotated[int, typer.Option(min=1, help="Runs executed at the same time.")]
Lease = Annotated[
    float,
    typer.Option(
        min=1, help="Lease seconds; a run whose worker stops heartbeating is requeued after this."
    ),
]
Grace = Annotated[
    float,
    typer.Option(
        min=0,
        help="On SIGTERM: seconds running runs get to finish before "
        "they are handed back to the queue.",
    ),
]
Poll = Annotated[
    float, typer.Option(min=0.01, help="Seconds between polls when nothing wakes the worker.")
]


def worker(
    ctx: typer.Context,
    concurrency: Concurrency = 16,
    lease: Lease = 30.0,
    poll: Poll = 1.0,
    grace: Grace = 30.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = DEFAULT_HOST,
    log_format: LogFormatOption = LogFormat.HUMAN,
) -> None:
    """Execute runs of the app's jobs and workflows until SIGTERM or Ctrl-C."""
    with loaded_app(ctx) as app, metrics_server(app, metrics_host, metrics_port):
        serve(
            app,
            WorkerOptions(
                concurrency=concurrency, lease_s=lease, poll_interval_s=poll, shutdown_grace_s=grace
            ),
            log_format=log_format,
        )


def dev(
    ctx: typer.Context,
    concurrency: Concurrency = 16,
    lease: Lease = 30.0,
    poll: Poll = 0.5,
    grace: Grace = 30.0,
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Run the worker only, without the HTTP API.")
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload/--no-reload", help="Restart when *.py files change.")
    ] = True,
    log_format: LogFormatOption = LogFormat.HUMAN,
) -> None:
    """Develop locally: migrate the app's database (SQLite by default), run a worker and
    serve the HTTP API (webhooks at POST /hooks/{name})."""
    if reload:  # a port picked here (0: any free one) is kept by every restart
        chosen = free_port(host) if port == 0 else port
        raise typer.Exit(supervise([*sys.argv[1:], "--port", str(chosen), "--no-reload"]))
    with loaded_app(ctx) as app:
        record_app_files()  # for the supervisor: restart when these change
        lines = RunLines(lambda run_id: app.store.model_calls(run_id), app.clock, notice)
        app.run_middleware.append(lines)  # prints each run as it ends
        store = SqlStore(app.database_url)  # also when the App says migrate=False
        try:
            before, after = store.migrate()
        finally:
            store.close()
        change = f"schema version {after}"
        if before != after:
            change = f"migrated from schema version {before} to {after}"
        out.print(f"database {app.database_url.redacted()} ({change})")
        scheduler = Scheduler(app)
        if scheduler.specs:
            out.print(f"scheduler: {', '.join(sorted(scheduler.specs))}")
        api = None if no_api else ApiServer(app, host, port)
        if api is not None:
            api.bind()  # a busy port fails now, before the worker starts
            announce(app, api, dev=True)
        with runs_told_by_run_lines():
            serve(
                app,
                WorkerOptions(
                    concurrency=concurrency,
                    lease_s=lease,
                    poll_interval_s=poll,
                    shutdown_grace_s=grace,
                ),
                api,
                scheduler if scheduler.specs or app.notify_channels() else None,
                log_format=log_format,
            )


def serve(
    app: App,
    options: WorkerOptions,
    api: ApiServer | None = None,
    scheduler: Scheduler | None = None,
    *,
    log_format: LogFormat = LogFormat.HUMAN,
) -> WorkerStats:
    if not app.definitions:
        raise ConfigError(
            "the app defines no jobs or workflows, so a worker has nothing to "
            "run; add one with @app.job or @app.workflow"
        )
    w = Worker(app, options)
    out.print(
        f"rota worker {w.id} on {app.database_url.redacted()}: serving "
        f"{', '.join(sorted(app.definitions))} (concurrency {options.concurrency})"
    )
    with log_to_stderr(log_format):
        stats = asyncio.run(_run_until_signalled(w, api, scheduler))
    out.print(
        f"worker {w.id} stopped: claimed {stats.claimed}, succeeded {stats.succeeded}, "
        f"failed {stats.failed}, retried {stats.retried}, cancelled {stats.cancelled}, "
        f"released {stats.released}"
    )
    return stats


async def _run_until_signalled(
    w: Worker, api: ApiServer | None = None, scheduler: Scheduler | None = None
) -> WorkerStats:
    def first(name: str) -> None:
        notice(
            f"{name}: stopping; claiming no more runs, runs in progress get up to "
            f"{w.options.shutdown_grace_s:g}s to finish, then go back to the queue "
            "(signal again to stop now)"
        )
        w.stop()
        if api is not None:
            api.stop()
        if scheduler is not None:
            scheduler.stop()

    with on_stop_signals(first, lambda name, signum: _stop_now(w, signum)):
        # The API and the worker stop together: a signal stops both, and should the API fail,
        # the worker stops too rather than run on without it.
        async with api.running(on_exit=w.stop) if api else contextlib.nullcontext():
            if scheduler is None:
                return await w.run()
            ticking = asyncio.create_task(scheduler.run(), name="rota-scheduler")
            try:
                return await w.run()
            finally:
                scheduler.stop()
                await ticking


def _stop_now(w: Worker, signum: int) -> None:
    """Hand held runs back to the queue, then exit without waiting for user code."""
    try:
        released = w.abandon()
        notice(
            f"{signal.Signals(signum).name} again: stopping now; {released} running "
            "run(s) went back to the queue"
        )
    except Exception as exc:  # the leases expire on their own; say so and still exit
        notice(
            f"could not release held runs ({exc}); they are requeued when their "
            f"lease expires ({w.options.lease_s:g}s)",
            style="red",
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)
