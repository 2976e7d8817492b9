"""Runs over HTTP: list (filters, keyset pages), show (steps, waits, chain and agent trace),
cancel, retry, and the replay report of an agent run.

Viewers read; operators act. The shapes are `rota runs ... --json`'s (storage/run_views.py,
agentloop/trace.py) plus each run's `url`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..agentloop.replay import NotReplayable, replay_run
from ..agentloop.trace import agent_trace
from ..clock import iso
from ..errors import InvalidStateError, RunNotFound, UnknownJobError
from ..model import Run, RunFilter, RunState
from ..storage import run_views
from .auth import authorize
from .context import ApiContext, ApiError, context
from .openapi import returns
from .params import (
    BadRequest,
    accepts,
    an_id,
    instant,
    one_of,
    path_id,
    read_query,
    text_filter,
    whole_number,
)
from .schemas import Json, ReplayOut, RunDetail, RunOut, RunPage

KINDS = ("job", "workflow", "agent")
STATES = tuple(s.value for s in RunState)


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/runs", list_runs, methods=["GET"]),
        Route("/api/runs/{id}", show_run, methods=["GET"]),
        Route("/api/runs/{id}/cancel", cancel_run, methods=["POST"]),
        Route("/api/runs/{id}/retry", retry_run, methods=["POST"]),
        Route("/api/runs/{id}/replay", replay_report, methods=["GET"]),
    ]


def run_url(run_id: str) -> str:
    return f"/api/runs/{run_id}"


def run_out(run: Run) -> dict[str, Any]:
    return {**run_views.run_json(run), "url": run_url(run.id)}


def not_found(exc: RunNotFound) -> ApiError:
    return ApiError(404, "not_found", f"{exc}; list runs with GET /api/runs")


@returns(RunPage)
@accepts(
    query={
        "name": text_filter(),
        "kind": one_of((*KINDS, ""), default=""),
        "state": one_of((*STATES, ""), default=""),
        "principal": text_filter(),
        "trigger": text_filter(),
        "since": instant(),
        "until": instant(),
        "error": text_filter(),
        "cursor": an_id("the next_cursor of the previous page"),
        "limit": whole_number(1, 500, default=50),
    }
)
async def list_runs(request: Request) -> Response:
    """Runs, newest first, filtered; `next_cursor` fetches the next page (viewer)."""
    await authorize(request, "viewer")
    q = read_query(request)
    flt = runs_filter(q, limit=q["limit"] + 1, error_text=q["error"])  # one more: a next page?
    ctx = context(request)
    runs = await ctx.db(lambda: ctx.app.store.list_runs(flt))
    page, more = runs[: q["limit"]], len(runs) > q["limit"]
    return Json({"items": [run_out(r) for r in page], "next_cursor": page[-1].id if more else None})


def runs_filter(q: Mapping[str, Any], *, limit: int, error_text: str | None) -> RunFilter:
    """The RunFilter for a parsed runs query (the API's and the dashboard's Runs page share
    these fields); `limit` and the error-text field are passed since their names differ."""
    since, until = q["since"], q["until"]
    if since is not None and until is not None and since > until:
        raise BadRequest(
            f"query parameter since ({iso(since)}) must not be later than until ({iso(until)})"
        )
    return RunFilter(
        states=one_value(q["state"]),
        names=one_value(q["name"]),
        limit=limit,
        before_id=q["cursor"],
        kinds=one_value(q["kind"]),
        principals=one_value(q["principal"]),
        triggers=one_value(q["trigger"]),
        since=q["since"],
        until=q["until"],
        error_text=error_text,
    )


def one_value(value: str | None) -> tuple[str, ...]:
    """A single optional filter value as the tuple RunFilter takes (empty: no filter)."""
    return (value,) if value else ()


@returns(RunDetail)
@accepts()
async def show_run(request: Request) -> Response:
    """One run with its steps, waits, escalation chain and agent trace (viewer)."""
    await authorize(request, "viewer")
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        shown = await ctx.db(_detail, ctx, run_id)
    except RunNotFound as exc:
        raise not_found(exc) from None
    return Json(shown)


def _detail(ctx: ApiContext, run_id: str) -> dict[str, Any]:
    store = ctx.app.store
    run = store.get_run(run_id)
    steps = store.steps(run_id)
    waits = store.waits([run_id])
    links = run_views.chain_json(store, run_views.chain(store, run), lambda w: w.kind)
    wait = run_views.open_waits(waits).get(run_id) if run.state == RunState.WAITING else None
    return {
        **run_views.with_wait(run_out(run), wait),
        "chain": links if len(links) > 1 else [],
        "steps": [run_views.step_json(run, s) for s in steps],
        "waits": [run_views.wait_json(w) for w in waits],
        "trace": agent_trace(steps, store.model_calls(run_id)),
    }


@returns(RunOut, errors=(409,))
@accepts()
async def cancel_run(request: Request) -> Response:
    """Cancel a queued or waiting run now, or ask the worker running it to stop (operator)."""
    return await _control(request, "cancel")


@returns(RunOut, errors=(409,))
@accepts()
async def retry_run(request: Request) -> Response:
    """Queue a FAILED or CANCELLED run again; completed steps keep their checkpoints
    (operator)."""
    return await _control(request, "retry")


async def _control(request: Request, action: str) -> Response:
    await authorize(request, "operator")
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    store, now = ctx.app.store, ctx.app.clock.now()
    act = store.cancel if action == "cancel" else store.retry
    try:
        run = await ctx.db(act, run_id, now)
    except RunNotFound as exc:
        raise not_found(exc) from None
    except InvalidStateError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    ctx.app._wake_local()  # a worker in this process (rota dev) sees it at once
    return Json(run_out(run))


@returns(ReplayOut, errors=(409, 422))
@accepts()
async def replay_report(request: Request) -> Response:
    """Re-run a finished agent run against its recorded model responses and tool results
    (no provider call, no tool side effect) and report where the current code diverges
    (operator)."""
    await authorize(request, "operator")
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        report = await ctx.db(lambda: replay_run(ctx.app, run_id, recorded_tools=True))
    except RunNotFound as exc:
        raise not_found(exc) from None
    except UnknownJobError as exc:
        raise ApiError(422, "not_replayable", f"{exc}: this app no longer defines it") from None
    except NotReplayable as exc:
        raise ApiError(409, "not_replayable", str(exc)) from None
    return Json(report.to_json())
