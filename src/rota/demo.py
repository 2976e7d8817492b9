"""`rota demo`: a first real workload, end to end, on the embedded SQLite default.

Synthetic payment-provider webhooks arrive as events; a deterministic job turns each into a
ledger entry. About 2% hit a transient failure on their first attempt and are retried with
backoff, as a flaky downstream would make them. The summary shows what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .app import App
from .ids import new_id
from .scheduling.triggers import on_event

EVENT = "payments.webhook"
KINDS = (
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "charge.refunded",
)
SIGN = {"invoice.paid": 1, "charge.refunded": -1}


class TransientLedgerError(RuntimeError):
    """Stands in for a downstream that is briefly unavailable."""


def build_app(database_url: str | None) -> App:
    app = App(database_url)

    @app.job(trigger=on_event(EVENT), retries=3, retry_backoff="50ms", timeout="10s")
    def post_to_ledger(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
        if _flaky(event["id"]) and ctx.attempt == 1:
            raise TransientLedgerError("ledger briefly unavailable (simulated)")
        cents = SIGN.get(event["type"], 0) * event["amount_cents"]
        return {"customer": event["customer"], "delta_cents": cents, "type": event["type"]}

    return app


def synthetic_event(batch: str, i: int) -> dict[str, Any]:
    return {
        "id": f"evt_{batch}_{i:06d}",
        "type": KINDS[i % len(KINDS)],
        "customer": f"cus_{i % 250:04d}",
        "amount_cents": 500 + (i * 37) % 20_000,
    }


def _flaky(event_id: str) -> bool:
    return hashlib.sha256(event_id.encode()).digest()[0] < 6  # ~2.3% of events


def run_demo(database_url: str | None, events: int, console: Console) -> dict[str, Any]:
    app = build_app(database_url)
    try:
        return _run(app, events, console)
    finally:
        app.close()


def _run(app: App, events: int, console: Console) -> dict[str, Any]:
    console.print(
        f"[bold]rota demo[/]: {events:,} webhook events -> deterministic ledger job "
        f"on {app.database_url.redacted()}"
    )
    batch = new_id()[-8:]
    app.store.migrate()
    worker = app.worker(concurrency=32, poll_interval_s=0.2)
    ingested = [0]
    started = time.perf_counter()
    producer = threading.Thread(target=_ingest, args=(app, batch, events, ingested), daemon=True)
    with _progress(console) as progress:
        asyncio.run(_work(worker, producer, progress, events, ingested))
    elapsed = time.perf_counter() - started
    summary = _summary(app, worker.stats, events, elapsed, batch)
    console.print(_summary_table(summary))
    return summary


def _ingest(app: App, batch: str, events: int, ingested: list[int]) -> None:
    for i in range(events):
        event = synthetic_event(batch, i)
        app.emit(EVENT, event, idempotency_key=event["id"], source="demo-webhook")
        ingested[0] = i + 1


async def _work(
    worker: Any, producer: threading.Thread, progress: Progress, events: int, ingested: list[int]
) -> None:
    ingest_task = progress.add_task("webhooks stored", total=events)
    run_task = progress.add_task("runs succeeded ", total=events)
    producer.start()
    work = asyncio.create_task(worker.run())
    while worker.stats.succeeded + worker.stats.failed < events:
        progress.update(ingest_task, completed=ingested[0])
        progress.update(run_task, completed=worker.stats.succeeded)
        if work.done():
            break
        await asyncio.sleep(0.1)
    worker.stop()
    await work
    progress.update(ingest_task, completed=ingested[0])
    progress.update(run_task, completed=worker.stats.succeeded)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _summary(app: App, stats: Any, events: int, elapsed: float, batch: str) -> dict[str, Any]:
    return {
        "events": events,
        "runs_succeeded": stats.succeeded,
        "runs_failed": stats.failed,
        "failures_retried": stats.retried,
        "seconds": round(elapsed, 2),
        "runs_per_second": round(stats.succeeded / elapsed, 1) if elapsed else 0.0,
        "database": app.database_url.redacted(),
        "batch": batch,
    }


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="demo summary", show_header=False)
    table.add_row("webhook events", f"{summary['events']:,}")
    table.add_row("runs succeeded", f"{summary['runs_succeeded']:,}")
    table.add_row("runs failed", f"{summary['runs_failed']:,}")
    table.add_row("transient failures retried", f"{summary['failures_retried']:,}")
    table.add_row("wall time", f"{summary['seconds']:.2f} s")
    table.add_row("throughput", f"{summary['runs_per_second']:,.0f} runs/s")
    table.add_row("database", summary["database"])
    table.add_row("next", "rota runs list   ·   rota runs show <id>")
    return table
