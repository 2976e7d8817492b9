"""`/runs/{id}`: one run. Its header (state, trigger, principal, who acted, duration,
attempts, cost), its error and failed step when it failed, the escalation chain, a waterfall
of its steps and waits, the agent trace with tokens and cost summed per subtree, payload and
result (redacted), and a replay against the current code.

A long run is rendered progressively: the page holds the first `STEP_PAGE` steps and the
first `CALL_PAGE` model calls of each agent, and the rest arrive in pages as they scroll into
view (`/runs/{id}/steps?after=SEQ`, `/runs/{id}/calls?agent=I&start=N`, each an htmx
`hx-trigger="revealed"` row). The header and error refresh live as the run changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...agentloop.replay import NotReplayable, replay_run
from ...errors import RunNotFound, UnknownJobError
from ...redaction import redactor
from ..context import ApiContext, ApiError, context
from ..params import accepts, path_id, read_query, whole_number
from .guard import Viewer, page
from .render import render
from .run_page_model import run_summary, trace_page, waterfall_page

MAX_SEQ = 10**9


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/runs/{id}", run_page, methods=["GET"], include_in_schema=False),
        Route("/runs/{id}/steps", more_steps, methods=["GET"], include_in_schema=False),
        Route("/runs/{id}/trace", trace, methods=["GET"], include_in_schema=False),
        Route("/runs/{id}/calls", more_calls, methods=["GET"], include_in_schema=False),
        Route("/runs/{id}/replay", replay, methods=["GET"], include_in_schema=False),
    ]


def _not_found(run_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no run {run_id}; find runs on the Runs page (/runs)")


@page("viewer")
@accepts()
async def run_page(request: Request, viewer: Viewer) -> Response:
    """The Run page."""
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        summary = await ctx.db(run_summary, ctx, run_id)
    except RunNotFound:
        raise _not_found(run_id) from None
    return render(request, "run.html", s=summary, r=summary.run)


@page("viewer")
@accepts(query={"after": whole_number(0, MAX_SEQ, default=0)})
async def more_steps(request: Request, viewer: Viewer) -> Response:
    """A page of waterfall rows (an htmx fragment)."""
    after = read_query(request)["after"]
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        bars, next_after = await ctx.db(waterfall_page, ctx, run_id, after)
    except RunNotFound:
        raise _not_found(run_id) from None
    return render(request, "run_steps.html", bars=bars, next_after=next_after, run_id=run_id)


@page("viewer")
@accepts()
async def trace(request: Request, viewer: Viewer) -> Response:
    """A long run's agent trace, read after its page (an htmx fragment)."""
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        agents = await ctx.db(trace_page, ctx, run_id, 0)
    except RunNotFound:
        raise _not_found(run_id) from None
    return render(request, "run_trace.html", agents=agents, run_id=run_id)


@page("viewer")
@accepts(
    query={
        "agent": whole_number(0, 10_000, default=0),
        "start": whole_number(1, MAX_SEQ, default=1),
    }
)
async def more_calls(request: Request, viewer: Viewer) -> Response:
    """A further page of one agent's model calls (an htmx fragment)."""
    q = read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    try:
        agents = await ctx.db(trace_page, ctx, run_id, q["start"])
    except RunNotFound:
        raise _not_found(run_id) from None
    if q["agent"] >= len(agents):
        raise ApiError(404, "not_found", f"run {run_id} has no agent number {q['agent']}")
    return render(request, "run_calls.html", node=agents[q["agent"]], run_id=run_id)


@page("operator")
@accepts()
async def replay(request: Request, viewer: Viewer) -> Response:
    """Replay a finished agent run against the current code (an htmx fragment): where it
    first diverges from the recording, or that it does not."""
    read_query(request)
    run_id = path_id(request, "id", "a run")
    ctx = context(request)
    report: dict[str, Any] | None = None
    problem = None
    try:
        replayed = await ctx.db(lambda: replay_run(ctx.app, run_id, recorded_tools=True))
        report = redactor.redact_json(replayed.to_json())
    except RunNotFound:
        raise _not_found(run_id) from None
    except UnknownJobError as exc:
        problem = f"{exc}: this app no longer defines it"
    except NotReplayable as exc:
        problem = str(exc)
    return render(request, "run_replay.html", report=report, problem=problem)
