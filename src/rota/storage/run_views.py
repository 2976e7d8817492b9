"""Runs, their steps, waits and escalation chains as JSON: one shape for `rota runs --json`
and the HTTP API (`GET /api/runs/...`), so the two never disagree.

Times are ISO 8601 UTC strings (`clock.iso`), durations seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..clock import iso, system_clock
from ..model import Event, Run, Step, Wait
from .base import RunReader

MAX_CHAIN = 200  # runs in a chain: a chain is short; a fan-out this large is summarised


def duration(run: Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at if run.finished_at is not None else system_clock.now()
    return max(0.0, end - run.started_at)


def step_offset(run: Run, step: Step) -> float | None:
    return None if run.started_at is None else step.started_at - run.started_at


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "state": run.state.value,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "failures": run.failures,
        "reclaims": run.reclaims,
        "trigger": run.trigger,
        "trigger_ref": run.trigger_ref,
        "principal": run.principal,
        "priority": run.priority,
        "idempotency_key": run.idempotency_key,
        "concurrency_key": run.concurrency_key,
        "parent_id": run.parent_id,
        "created_at": iso(run.created_at),
        "run_after": iso(run.run_after),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": duration(run),
        "lease_owner": run.lease_owner,
        "lease_expires_at": iso(run.lease_expires_at),
        "cancel_requested": run.cancel_requested,
        "payload": run.payload,
        "result": run.result,
        "error": run.error,
    }


def step_json(run: Run, step: Step) -> dict[str, Any]:
    return {
        "key": step.key,
        "name": step.name,
        "seq": step.seq,
        "state": step.state,
        "attempts": step.attempts,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "offset_s": step_offset(run, step),
        "duration_s": step.finished_at - step.started_at,
        "result": step.result,
        "error": step.error,
    }


def wait_json(wait: Wait) -> dict[str, Any]:
    return {
        "step": wait.step_key,
        "kind": wait.kind,
        "names": wait.detail.get("names", []),
        "match": wait.detail.get("match") or {},
        "status": wait.status,
        "since": iso(wait.since),
        "deadline": iso(wait.deadline),
        "event_id": wait.event_id,
        "registered_at": iso(wait.created_at),
        "resolved_at": iso(wait.resolved_at),
    }


def open_waits(waits: list[Wait]) -> dict[str, Wait]:
    """The open wait of each run (a run waits for one thing at a time)."""
    return {w.run_id: w for w in waits if w.status == "waiting"}


def with_wait(shown: dict[str, Any], wait: Wait | None) -> dict[str, Any]:
    return shown if wait is None else {**shown, "waiting_for": wait_json(wait)}


def waits_json(waits: list[Wait]) -> dict[str, Any]:
    return {"waits": [wait_json(w) for w in waits]} if waits else {}


def chain(store: RunReader, run: Run) -> list[tuple[int, Run]]:
    """The escalation chain: (depth, run) from the root down, this run included; depth 0 is
    the root. Up: the runs that made this one (parent_id). Down: every run it made
    (escalations, shadow runs), breadth first."""
    ancestors: list[Run] = []
    current = run
    while current.parent_id is not None and len(ancestors) < MAX_CHAIN:
        current = store.get_run(current.parent_id)
        ancestors.insert(0, current)
    lineage = [(i, r) for i, r in enumerate([*ancestors, run])]
    level, depth = [run], len(ancestors)
    while level and len(lineage) < MAX_CHAIN:
        depth += 1
        level = store.child_runs([r.id for r in level])
        lineage += [(depth, child) for child in level]
    return lineage[:MAX_CHAIN]


def chain_json(
    store: RunReader, links: list[tuple[int, Run]], describe: Callable[[Wait], str]
) -> list[dict[str, Any]]:
    """The chain as JSON; `describe` says in words what a waiting run waits for."""
    waits = open_waits(store.waits([r.id for _, r in links]))
    return [
        {
            "depth": depth,
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "trigger": r.trigger,
            "state": r.state.value,
            "waiting_for": describe(waits[r.id]) if r.id in waits else None,
        }
        for depth, r in links
    ]


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "source": event.source,
        "idempotency_key": event.idempotency_key,
        "created_at": iso(event.created_at),
        "payload": event.payload,
    }
