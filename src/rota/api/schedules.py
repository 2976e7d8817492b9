"""Schedules over HTTP, as `rota schedules ...` (both through rota.scheduler):

- `GET /api/schedules`: each schedule with its next fire times, state and last tick (viewer);
- `POST /api/schedules/{name}/pause|resume` (operator);
- `GET /api/schedules/{name}/ticks`: every decision about a fire time, skipped ones with
  their reason (viewer);
- `POST /api/schedules/{name}/backfill` (operator): a run for each fire time in [start, end)
  that has none yet. `dry_run` lists what it would enqueue; more than CONFIRM_OVER runs need
  `confirm` set to their exact number, and a range of more than MAX_FIRES fire times is
  refused, so a typo in a date cannot enqueue a year of five-second ticks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..clock import iso
from ..identity.admin import Actor, actor_of
from ..model import Tick
from ..scheduler import (
    Scheduler,
    ScheduleView,
    UnknownSchedule,
    audit_backfill,
    set_paused,
    tick_id,
    tick_json,
)
from .answers import answer
from .auth import authorize
from .context import ApiContext, ApiError, context, problem, shown
from .cursors import cursor, encode, page, shaped
from .openapi import returns
from .params import BadRequest, accepts, one_of, path_name, read_body, read_query, whole_number
from .schemas import Out

CONFIRM_OVER = 1000  # runs one backfill may enqueue without `confirm`
MAX_FIRES = 50_000  # fire times one backfill may cover at all
PREVIEW = 100  # ticks a dry run lists


class TickOut(Out):
    id: str
    schedule: str
    fire_at: str | None
    last_fire_at: str | None
    ticks: int
    outcome: str
    reason: str | None
    run_id: str | None
    decided_at: str | None
    decided_by: str | None


class ScheduleOut(Out):
    name: str
    job: str | None
    trigger: str
    state: str = pydantic.Field(description="active, paused, unregistered or not_in_code")
    paused: bool
    next_fires: list[str] = pydantic.Field(description="In the schedule's time zone")
    next_fires_utc: list[str]
    last_tick: TickOut | None


class SchedulePage(Out):
    items: list[ScheduleOut]
    next_cursor: str | None


class TickPage(Out):
    items: list[TickOut]
    next_cursor: str | None


class BackfillBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    start: str  # ISO 8601; UTC when it has no offset
    end: str  # exclusive
    dry_run: bool = False
    confirm: int | None = None  # the number of runs the caller agreed to


class BackfillTick(Out):
    id: str
    fire_at: str | None


class BackfillOut(Out):
    schedule: str
    start: str | None
    end: str | None
    dry_run: bool
    fire_times: int = pydantic.Field(description="Fire times in [start, end)")
    already_run: int = pydantic.Field(description="Of those, fire times that have a run")
    to_enqueue: int
    enqueued: int = pydantic.Field(description="Runs enqueued (0 on a dry run)")
    needs_confirm: bool
    preview: list[BackfillTick] = pydantic.Field(description="The first ticks to enqueue")
    message: str


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/schedules", list_schedules, methods=["GET"]),
        Route("/api/schedules/{name}/pause", pause, methods=["POST"]),
        Route("/api/schedules/{name}/resume", resume, methods=["POST"]),
        Route("/api/schedules/{name}/ticks", list_ticks, methods=["GET"]),
        Route("/api/schedules/{name}/backfill", backfill, methods=["POST"]),
    ]


@returns(SchedulePage)
@accepts(
    query={
        "count": whole_number(1, 20, default=3),
        "limit": whole_number(1, 1000, default=100),
        "cursor": cursor(),
    }
)
async def list_schedules(request: Request) -> Response:
    """Schedules with their next fire times, state and last tick (viewer)."""
    await authorize(request, "viewer")
    query = read_query(request)
    after = shaped(query["cursor"], str)
    ctx = context(request)
    views = await ctx.db(lambda: Scheduler(ctx.app).overview(query["count"]))
    items, more = page(views, lambda v: (v.name,), after, query["limit"])
    body = {"items": [_schedule(v) for v in items], "next_cursor": more}
    return answer(SchedulePage, body)


@returns(ScheduleOut, errors=(409,))
@accepts()
async def pause(request: Request) -> Response:
    """Pause a schedule: its ticks are recorded as skipped (paused) (operator)."""
    return await _set_paused(request, True)


@returns(ScheduleOut, errors=(409,))
@accepts()
async def resume(request: Request) -> Response:
    """Resume a schedule from now on; ticks missed while paused are not run (operator)."""
    return await _set_paused(request, False)


async def _set_paused(request: Request, paused: bool) -> Response:
    actor = actor_of(await authorize(request, "operator"))
    read_query(request)
    name = path_name(request, "name", "a schedule's")
    ctx = context(request)

    def change() -> ScheduleView | None:
        set_paused(ctx.app.store, name, paused, ctx.app.clock.now(), actor)
        return _one(Scheduler(ctx.app), name)

    try:
        view = await ctx.db(change)
    except UnknownSchedule:
        if name in Scheduler(ctx.app).specs:
            return problem(
                409,
                "conflict",
                f"schedule '{shown(name)}' is not registered yet: a scheduler registers it "
                "when it starts (rota scheduler, or rota dev)",
            )
        return _unknown(name)
    assert view is not None  # a stored schedule is in the overview
    return answer(ScheduleOut, _schedule(view))


@returns(TickPage)
@accepts(
    query={
        "outcome": one_of(("all", "enqueued", "skipped"), default="all"),
        "limit": whole_number(1, 1000, default=100),
        "cursor": cursor(),
    }
)
async def list_ticks(request: Request) -> Response:
    """Decisions about a schedule's fire times, newest first; skipped ones say why (viewer)."""
    await authorize(request, "viewer")
    query = read_query(request)
    name = path_name(request, "name", "a schedule's")
    after = shaped(query["cursor"], float, str)
    outcome = None if query["outcome"] == "all" else query["outcome"]
    limit: int = query["limit"]
    ctx = context(request)

    def read() -> list[Tick] | None:
        if name not in Scheduler(ctx.app).specs and not ctx.app.store.schedules([name]):
            return None
        before = None if after is None else (float(after[0]), str(after[1]))
        return ctx.app.store.ticks(name, outcome=outcome, limit=limit + 1, before=before)

    found = await ctx.db(read)
    if found is None:
        return _unknown(name)
    more = encode((found[limit - 1].fire_at, found[limit - 1].id)) if len(found) > limit else None
    items = [tick_json(t) for t in found[:limit]]
    return answer(TickPage, {"items": items, "next_cursor": more})


@returns(BackfillOut, errors=(409, 422))
@accepts(body=BackfillBody)
async def backfill(request: Request) -> Response:
    """Backfill a schedule over [start, end); dry_run previews it (operator)."""
    actor = actor_of(await authorize(request, "operator"))
    read_query(request)
    name = path_name(request, "name", "a schedule's")
    body: BackfillBody = await read_body(request)
    start, end = _moment("start", body.start), _moment("end", body.end)
    if end <= start:
        raise BadRequest(
            f"end ({iso(end.timestamp())}) must be after start ({iso(start.timestamp())})"
        )
    ctx = context(request)
    try:
        out = await ctx.db(lambda: _backfill(Scheduler(ctx.app), name, start, end, body, actor))
    except UnknownSchedule:
        return _unknown(name)
    return answer(BackfillOut, out)


def _backfill(
    s: Scheduler, name: str, start: datetime, end: datetime, body: BackfillBody, actor: Actor
) -> dict[str, object]:
    plan = s.plan_backfill(name, start, end, limit=MAX_FIRES)
    fires, existing, todo = plan.fires, plan.existing, plan.todo
    if len(fires) > MAX_FIRES:
        raise ApiError(
            422,
            "too_many_ticks",
            f"[start, end) holds more than {MAX_FIRES:,} fire times of schedule "
            f"'{shown(name)}'; backfill a shorter range at a time",
        )
    needs_confirm = len(todo) > CONFIRM_OVER
    enqueued = 0
    if not body.dry_run:
        if needs_confirm and body.confirm != len(todo):
            raise ApiError(
                409,
                "confirm_needed",
                f"this backfill would enqueue {len(todo):,} runs of '{shown(name)}', more than "
                f"the {CONFIRM_OVER:,} that need no confirmation: preview it with "
                f'"dry_run": true, then send "confirm": {len(todo)} to go ahead',
            )
        enqueued = s.backfill(name, start, end, fires=todo) if todo else 0
        audit_backfill(s.store, actor, name, start, end, enqueued)
    verb = "would enqueue" if body.dry_run else "enqueued"
    count = len(todo) if body.dry_run else enqueued
    return {
        "schedule": name,
        "start": iso(start.timestamp()),
        "end": iso(end.timestamp()),
        "dry_run": body.dry_run,
        "fire_times": len(fires),
        "already_run": len(existing),
        "to_enqueue": len(todo),
        "enqueued": enqueued,
        "needs_confirm": needs_confirm,
        "preview": [
            {"id": tick_id(name, f), "fire_at": iso(f.timestamp())} for f in todo[:PREVIEW]
        ],
        "message": f"backfill {name}: {verb} {count} run(s); {len(existing)} of {len(fires)} "
        "fire time(s) already had a run and are left alone",
    }


# -- helpers -------------------------------------------------------------------------------


def _schedule(view: ScheduleView) -> dict[str, object]:
    return {
        "name": view.name,
        "job": view.job,
        "trigger": view.trigger,
        "state": view.state,
        "paused": view.paused,
        "next_fires": [f.isoformat() for f in view.next_fires],
        "next_fires_utc": [iso(f.timestamp()) for f in view.next_fires],
        "last_tick": None if view.last_tick is None else tick_json(view.last_tick),
    }


def _one(s: Scheduler, name: str) -> ScheduleView | None:
    return next((v for v in s.overview() if v.name == name), None)


def _unknown(name: str) -> Response:
    return problem(
        404,
        "not_found",
        f"no schedule named '{shown(name)}' (GET /api/schedules lists them)",
    )


def _moment(field: str, text: str) -> datetime:
    """An ISO 8601 time, UTC when it has no offset, between 1970 and 9999."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if not 0 <= moment.timestamp() < 253_370_764_800:  # 1970-01-01 .. 9999-01-01
            raise ValueError(text)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{field} must be an ISO 8601 time from 1970 to 9998 (UTC unless it has an "
            f"offset), e.g. 2026-01-31T09:00:00Z; got '{shown(text)}'"
        ) from None
    return moment.astimezone(UTC)
