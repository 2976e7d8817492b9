"""The demo's answer to the seed's question, read back from the store after the run.

Every figure comes from what was recorded in the demo's window: run states, escalations,
approvals, shadow comparisons, and the metered tokens, sessions and compute of each run,
billed under each plan with rota's own cost functions (rota.cost). Three ways of doing the
same work are compared:

- hybrid: what just ran (the job, its escalations to the agent, the shadow sample);
- job only: the job's runs alone; the items it escalated stay unhandled;
- agent only: the agent on every item, extrapolated to all events from the agent runs
  measured here (tokens per item, latency per item), and labelled as extrapolated.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import fmean
from typing import Any

from ..cost.compare import evaluate
from ..cost.history import History, load_history
from ..cost.prices import PriceTable
from ..cost.records import RunCost
from ..jobs import ESCALATION_TRIGGER, SHADOW_TRIGGER
from ..storage.approval_records import STATUSES
from ..storage.base import Store
from ..storage.history import RunRow
from .plans import PLANS
from .scenario import AGENT, AGENT_CONCURRENCY, JOB


def summarize(store: Store, events: int, since: datetime, until: datetime) -> dict[str, Any]:
    """The summary of the demo run whose runs started in [since, until)."""
    history = load_history(store, since, until)
    rows = store.run_rows(since.timestamp(), until.timestamp())
    window = (since, until)
    agent_rows = [r for r in rows if r.name == AGENT]
    escalations = sum(1 for r in agent_rows if r.trigger == ESCALATION_TRIGGER)
    shadows = [r for r in store.shadow_records(JOB, since.timestamp()) if r.error is None]
    agreed = sum(1 for r in shadows if r.agreed)
    job_records = [_job_only(r) for r in rows if r.name == JOB]
    return {
        "events": events,
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "runs": {name: store.count_states([name]) for name in (JOB, AGENT)},
        "escalations": escalations,
        "shadow_runs": sum(1 for r in agent_rows if r.trigger == SHADOW_TRIGGER),
        "approvals": _approvals(store, since.timestamp()),
        "shadow": {
            "compared": len(shadows),
            "agreed": agreed,
            "rate": round(agreed / len(shadows), 4) if shadows else None,
        },
        "plans": [{"name": p.name, "kind": p.kind, "about": p.description} for p in PLANS],
        "scenarios": {
            "job_only": _scenario(
                job_records, history.table, window, _span(r for r in rows if r.name == JOB)
            )
            | {"handled": events - escalations, "unhandled": escalations, "extrapolated": False},
            "agent_only": _agent_only(history, agent_rows, events, window),
            "hybrid": _scenario(list(history.records), history.table, window, _span(rows))
            | {"handled": events, "unhandled": 0, "extrapolated": False},
        },
    }


def _scenario(
    records: list[RunCost], table: PriceTable, window: tuple[datetime, datetime], wall: float
) -> dict[str, Any]:
    results = [evaluate(plan, records, table, window=window) for plan in PLANS]
    return {
        "wall_seconds": round(wall, 3),
        "tokens": sum(r.tokens for r in records),
        "usd": {r.name: str(r.total) for r in results},
        "dropped": {r.name: len(r.dropped) for r in results},
    }


def _agent_only(
    history: History, agent_rows: list[RunRow], events: int, window: tuple[datetime, datetime]
) -> dict[str, Any]:
    """The agent on all `events`: its measured runs, repeated in turn to `events` runs
    spread over the window, billed like the others. Wall time: the mean measured latency
    of one item, times the items, over the agent's concurrency."""
    samples = [r for r in history.records if r.uses_ai]
    latencies = [
        r.finished_at - r.started_at - r.parked_s for r in agent_rows if r.finished_at is not None
    ]
    if not samples or not latencies:
        return {"extrapolated": True, "measured_items": 0, "note": "no agent run was measured"}
    since, until = window
    step = (until - since) / events
    records = [
        replace(
            samples[i % len(samples)],
            run_id=f"extrapolated-{i}",
            kind="agent",
            started_at=since + step * i,
        )
        for i in range(events)
    ]
    per_item_s = fmean(latencies)
    figures = _scenario(records, history.table, window, per_item_s * events / AGENT_CONCURRENCY)
    return figures | {
        "handled": events,
        "unhandled": 0,
        "extrapolated": True,
        "measured_items": len(samples),
        "per_item": {
            "tokens": round(fmean(r.tokens for r in samples), 1),
            "seconds": round(per_item_s, 4),
        },
    }


def _job_only(row: RunRow) -> RunCost:
    """A job run alone: its own compute, without the agent it may have escalated to."""
    return RunCost(
        run_id=row.id,
        name=row.name,
        kind="job",
        started_at=datetime.fromtimestamp(row.started_at, UTC),
        compute_seconds=Decimal(str(round(row.compute_s or 0.0, 6))),
    )


def _approvals(store: Store, since: float) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for request in store.approvals(statuses=(), limit=100_000):
        if request.created_at >= since:
            counts[request.status] += 1
    return counts


def _span(rows: Any) -> float:
    """Seconds from the first run's start to the last one's finish."""
    found = [(r.started_at, r.finished_at) for r in rows if r.finished_at is not None]
    if not found:
        return 0.0
    return max(f for _, f in found) - min(s for s, _ in found)


def window_of(started: float, finished: float) -> tuple[datetime, datetime]:
    """The window of a demo run: from its start to a second after its end."""
    since = datetime.fromtimestamp(started, UTC)
    return since, datetime.fromtimestamp(finished, UTC) + timedelta(seconds=1)
