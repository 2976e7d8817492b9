"""`/schedules`: each schedule with its next fire times, last runs and skipped ticks (with
their reasons), pause and resume (operator), and backfill with a preview (operator):
`/schedules/{name}/backfill?start=&end=` shows what it would enqueue, and its form confirms.

Everything goes through rota.scheduler, as `rota schedules ...` and /api/schedules do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import RunNotFound
from ...identity.admin import actor_of
from ...model import Run, Tick
from ...scheduler import Scheduler, ScheduleView, UnknownSchedule, set_paused
from ..context import ApiContext, ApiError, context, shown
from ..params import BadRequest, accepts, path_name, read_query, whole_number
from ..schedules import CONFIRM_OVER, MAX_FIRES
from .forms import blank_is_none
from .guard import Form, Viewer, action, page
from .render import NavEntry, render
from .schedules_backfill import (
    a_time,
    check_range,
    enqueue,
    form_confirm,
    form_time,
    preview,
)

NAV = NavEntry("Schedules", "/schedules", "s", 40)
NEXT_FIRES = 5
LAST_RUNS = 10
SKIPPED_SHOWN = 20
NOUN = "a schedule's"


@dataclass(frozen=True)
class LastRun:
    """An enqueued tick and its run (None when the run was pruned since)."""

    tick: Tick
    run: Run | None


@dataclass(frozen=True)
class Detail:
    view: ScheduleView
    runs: list[LastRun]
    skipped: list[Tick]


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    base = "/schedules/{name}"
    return [
        Route("/schedules", schedules_page, methods=["GET"], include_in_schema=False),
        Route(base, schedule_page, methods=["GET"], include_in_schema=False),
        Route(base + "/pause", pause, methods=["POST"], include_in_schema=False),
        Route(base + "/resume", resume, methods=["POST"], include_in_schema=False),
        Route(base + "/backfill", backfill_preview, methods=["GET"], include_in_schema=False),
        Route(base + "/backfill", backfill, methods=["POST"], include_in_schema=False),
    ]


@page("viewer")
@accepts()
async def schedules_page(request: Request, viewer: Viewer) -> Response:
    """Every schedule with its next fire times, state and last tick."""
    read_query(request)
    ctx = context(request)
    views = await ctx.db(lambda: Scheduler(ctx.app).overview(3))
    return render(request, "schedules.html", views=views, defined=sorted(ctx.app.definitions))


@page("viewer")
@accepts(query={"backfilled": whole_number(0, MAX_FIRES, default=-1)})
async def schedule_page(request: Request, viewer: Viewer) -> Response:
    """One schedule: next fire times, last runs, skipped ticks, pause/resume, backfill."""
    backfilled = read_query(request)["backfilled"]
    name = path_name(request, "name", NOUN)
    ctx = context(request)
    found = await ctx.db(_detail, Scheduler(ctx.app), name)
    return render(
        request,
        "schedule.html",
        d=found,
        backfilled=None if backfilled < 0 else backfilled,
        confirm_over=CONFIRM_OVER,
        max_fires=MAX_FIRES,
    )


@page("operator")
@accepts(query={"start": blank_is_none(a_time()), "end": blank_is_none(a_time())})
async def backfill_preview(request: Request, viewer: Viewer) -> Response:
    """What a backfill of [start, end) would enqueue, and the form that confirms it."""
    query = read_query(request)
    name = path_name(request, "name", NOUN)
    start, end = query["start"], query["end"]
    for field, value in (("start", start), ("end", end)):
        if value is None:
            raise BadRequest(f"query parameter {field} is required: the backfill's range")
    check_range(start, end)
    ctx = context(request)
    scheduler = Scheduler(ctx.app)
    _known(scheduler, name)
    plan = await ctx.db(preview, scheduler, name, start, end)
    return render(
        request,
        "backfill.html",
        p=plan,
        start=request.query_params["start"],
        end=request.query_params["end"],
        confirm_over=CONFIRM_OVER,
    )


@action("operator")
async def backfill(request: Request, viewer: Viewer, form: Form) -> Response:
    """Enqueue the previewed backfill: `start`, `end` and `confirm` (its number of runs)."""
    read_query(request)
    name = path_name(request, "name", NOUN)
    _only(form, {"start", "end", "confirm"})
    start, end = form_time("start", form.get("start")), form_time("end", form.get("end"))
    check_range(start, end)
    confirm = form_confirm(form.get("confirm"))
    ctx = context(request)
    scheduler = Scheduler(ctx.app)
    _known(scheduler, name)
    actor = actor_of(viewer.principal)
    done = await ctx.db(enqueue, scheduler, name, start, end, confirm, actor)
    return _back(f"/schedules/{name}", backfilled=done)


@action("operator")
async def pause(request: Request, viewer: Viewer, form: Form) -> Response:
    """Pause a schedule: its ticks are recorded as skipped (paused)."""
    return await _set_paused(request, viewer, form, True)


@action("operator")
async def resume(request: Request, viewer: Viewer, form: Form) -> Response:
    """Resume a schedule from now on."""
    return await _set_paused(request, viewer, form, False)


async def _set_paused(request: Request, viewer: Viewer, form: Form, paused: bool) -> Response:
    read_query(request)
    name = path_name(request, "name", NOUN)
    _only(form, {"back"})
    back = form.get("back", "detail")
    if back not in ("list", "detail"):
        raise BadRequest(f"form field back must be list or detail; got '{shown(back)}'")
    ctx = context(request)
    actor = actor_of(viewer.principal)
    scheduler = Scheduler(ctx.app)
    try:
        await ctx.db(set_paused, ctx.app.store, name, paused, ctx.app.clock.now(), actor)
    except UnknownSchedule:
        if name in scheduler.specs:
            raise ApiError(
                409,
                "conflict",
                f"schedule '{shown(name)}' is not registered yet: a scheduler registers it "
                "when it starts (rota scheduler, or rota dev)",
            ) from None
        raise _unknown(name) from None
    return _back("/schedules" if back == "list" else f"/schedules/{name}")


def _detail(s: Scheduler, name: str) -> Detail:
    view = next((v for v in s.overview(NEXT_FIRES) if v.name == name), None)
    if view is None:
        raise _unknown(name)
    store = s.store
    enqueued = store.ticks(name, outcome="enqueued", limit=LAST_RUNS)
    runs = [LastRun(t, _run(s, t.run_id)) for t in enqueued]
    skipped = store.ticks(name, outcome="skipped", limit=SKIPPED_SHOWN)
    return Detail(view, runs, skipped)


def _run(s: Scheduler, run_id: str | None) -> Run | None:
    if run_id is None:
        return None
    try:
        return s.store.get_run(run_id)
    except RunNotFound:
        return None


def _known(s: Scheduler, name: str) -> None:
    if name not in s.specs:
        raise _unknown(name)


def _unknown(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no schedule named '{shown(name)}' in this app's code")


def _only(form: Form, allowed: set[str]) -> None:
    form.pop("csrf", None)  # checked by the guard
    unknown = sorted(set(form) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise BadRequest(f"unknown form field '{shown(unknown[0])}': this form takes {takes}")


def _back(path: str, **query: int) -> Response:
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(path + suffix, status_code=303)
