"""Running the demo: serve the API, send the webhooks, work the queue, show the phases.

Everything runs in one event loop: the HTTP API (uvicorn, on a free loopback port), the
signed senders, the worker, and the simulated approver. The run is over when every
delivery is in, every job run has finished, and every agent run has finished (or, with
`--interactive`, waits for your decision). The summary is then read back from the store
(rota.demo.summary); after it the API stays up until Ctrl-C, unless `serve` is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..api.dashboard.sessions import LOGIN_CODE_TTL_S, login_link
from ..api.server import ApiServer
from ..app import App
from ..errors import ConfigError, RotaError
from ..ids import new_id
from ..model import RunState
from ..storage.approval_records import PENDING
from .approver import approve_until
from .policy import SCRIPTED_MODEL
from .scenario import AGENT, JOB, SHADOW_SAMPLE, build_app
from .summary import summarize, window_of
from .traffic import deliver_all

WORKER_CONCURRENCY = 48
POLL_S = 0.25
MODEL_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


class DemoStopped(RotaError):
    """The demo's worker or API stopped before the work was done."""


@dataclass(frozen=True)
class DemoOptions:
    """What `rota demo` was asked: see `rota demo --help`."""

    events: int = 10_000
    database_url: str | None = None  # None: a fresh file in a new temporary folder
    model: str | None = None  # None: the scripted (simulated) reviewer
    interactive: bool = False  # leave approvals to the user, in the dashboard
    serve: bool = True  # keep the API up after the summary, until Ctrl-C
    port: int = 0  # 0: a free port


def check_model(model: str | None, environ: dict[str, str] | None = None) -> None:
    """A real model needs `provider:name` and that provider's API key in the environment."""
    if model is None:
        return
    env = os.environ if environ is None else environ
    provider, colon, name = model.partition(":")
    if not colon or not name or provider not in MODEL_KEYS:
        raise ConfigError(
            f"--model {model!r}: give provider:name with provider one of "
            f"{', '.join(MODEL_KEYS)}, e.g. anthropic:claude-sonnet-4-5 (leave it out for "
            "the simulated reviewer)"
        )
    if not env.get(MODEL_KEYS[provider], "").strip():
        raise ConfigError(
            f"--model {model!r} calls a real model, so ${MODEL_KEYS[provider]} must be set; "
            "leave --model out to run the demo offline with the simulated reviewer"
        )


def fresh_database() -> str:
    """A new, empty SQLite file for this run of the demo."""
    folder = Path(tempfile.mkdtemp(prefix="rota-demo-"))
    return f"sqlite:///{folder / 'rota-demo.db'}"


def run_demo(
    options: DemoOptions, console: Console, show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Run the demo; `show(summary)` is called once the summary is ready (before serving)."""
    check_model(options.model)
    app, _ = build_app(options.database_url or fresh_database(), options.model)
    try:
        return asyncio.run(_main(app, options, console, show))
    finally:
        app.close()


async def _main(
    app: App, options: DemoOptions, console: Console, show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    app.store.migrate()
    server = ApiServer(app, port=options.port)
    server.bind()
    reviewer = options.model or "a scripted reviewer (simulated model: tokens and latency)"
    console.print(
        f"[bold]rota demo[/]: {options.events:,} signed webhooks -> POST {server.url}/hooks/"
        f"payments -> job {JOB}; exceptions -> agent {AGENT} ({reviewer}); entries over $150 "
        f"-> {'you, in the dashboard' if options.interactive else 'a simulated approver'}\n"
        f"database: {app.database_url.redacted()}"
    )
    if options.model is not None:
        runs = round(options.events * (0.012 + SHADOW_SAMPLE))
        console.print(
            f"[yellow]--model {options.model}: about {runs:,} agent runs will call this real "
            "model (the exceptions and the shadow sample), a few calls each[/]"
        )
    worker = app.worker(concurrency=WORKER_CONCURRENCY, poll_interval_s=0.2)
    stop_approving = asyncio.Event()
    started = app.clock.now()
    async with server.running(on_exit=worker.stop):
        working = asyncio.create_task(worker.run(), name="demo-worker")
        approving = None
        if not options.interactive:
            approving = asyncio.create_task(approve_until(app, stop_approving))
        try:
            await _phases(app, server.url, options, console, working)
            finished = app.clock.now()
            summary = await asyncio.to_thread(
                summarize, app.store, options.events, *window_of(started, finished)
            )
            link = _login_link(app, server) if options.serve else None
            summary |= {
                "database": app.database_url.redacted(),
                "model": options.model or SCRIPTED_MODEL,
                "simulated": options.model is None,
                "dashboard": f"{server.url}/" if options.serve else None,
                "login_link": link,
            }
            show(summary)
            if options.serve:
                console.print(f"dashboard: [bold]{server.url}/[/]   (Ctrl-C to stop)")
                if link is not None:
                    minutes = round(LOGIN_CODE_TTL_S / 60)
                    console.print(f"sign in once, within {minutes} min: {link}", soft_wrap=True)
                await _until_interrupted()
        finally:
            stop_approving.set()
            worker.stop()
            await working
            if approving is not None:
                await approving
    return summary


async def _phases(
    app: App, url: str, options: DemoOptions, console: Console, working: asyncio.Task[Any]
) -> None:
    delivered = [0]

    def one() -> None:
        delivered[0] += 1

    sending = asyncio.create_task(deliver_all(url, new_id()[-8:], options.events, one))
    with _progress(console) as progress:
        bars = {
            "sent": progress.add_task("webhooks delivered (HTTP)", total=options.events),
            "jobs": progress.add_task(f"job runs finished ({JOB})", total=options.events),
            "agent": progress.add_task(f"agent runs finished ({AGENT})", total=0),
            "approvals": progress.add_task("approvals decided", total=0),
        }
        while True:
            counts = await asyncio.to_thread(_counts, app)
            progress.update(bars["sent"], completed=delivered[0])
            progress.update(bars["jobs"], completed=counts["jobs_done"])
            progress.update(bars["agent"], completed=counts["agent_done"], total=counts["agent"])
            progress.update(
                bars["approvals"], completed=counts["decided"], total=counts["approvals"]
            )
            if sending.done():
                sending.result()  # a refused delivery stops the demo with its reason
                if _settled(counts, options):
                    return
            if working.done():
                working.result()
                raise DemoStopped("the demo's worker stopped before the work was done")
            await asyncio.sleep(POLL_S)


def _login_link(app: App, server: ApiServer) -> str | None:
    """A one-time sign-in link to the dashboard (a local admin `dev` is made if need be, as
    `rota dev` does: the demo's database is the user's own scratch file)."""
    link = login_link(app.store, server.url, app.clock.now(), make_dev_admin=True)
    return None if link is None else link[0]


def _counts(app: App) -> dict[str, int]:
    jobs = app.store.count_states([JOB])
    agents = app.store.count_states([AGENT])
    approvals = app.store.approvals(statuses=(), limit=100_000)
    return {
        "jobs": sum(jobs.values()),
        "jobs_done": sum(n for s, n in jobs.items() if RunState(s).finished),
        "agent": sum(agents.values()),
        "agent_done": sum(n for s, n in agents.items() if RunState(s).finished),
        "agent_waiting": agents.get(RunState.WAITING, 0),
        "approvals": len(approvals),
        "decided": sum(1 for a in approvals if a.status != PENDING),
    }


def _settled(counts: dict[str, int], options: DemoOptions) -> bool:
    """Every job run finished, and every agent run too (or waits for you, interactively)."""
    if counts["jobs_done"] < options.events:
        return False
    waiting = counts["agent_waiting"] if options.interactive else 0
    return counts["agent_done"] + waiting == counts["agent"]


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
