"""`POST /api/routines/{name}/fire`: fire a routine over HTTP, the hosted fire endpoint's
shape. The body's `text` is appended to the routine's prompt for this run; the answer is the
run's id and URL.

Allowed to a token made for this routine with `rota tokens create --fire NAME` (shown once),
to a principal holding the scope `fire:<name>`, and to an operator (api/auth.py): a fire token
for one routine is refused (403) for every other. The routine must list `- api: true` among
its triggers. The run is requested by the token's principal (audited) and runs as the
routine's owner or service account. A run over the routine's caps is answered 409 `capped`
(dropped, and recorded); a deferred one is 202 with the run, due in the next window.

For the dashboard and operators (viewer): `GET /api/routines` lists the routines loaded and
the problems of the files that did not load; `GET /api/dropped-runs` the runs caps dropped or
deferred, with their reasons (`rota runs list --dropped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..identity import admin
from ..identity.principals import PrincipalDisabled, UnknownPrincipal
from ..routines import RoutineNotFound, RunDropped
from ..routines.overview import summary
from ..storage.capped import DEFERRED, DROPPED, capped_json
from .auth import authorize, authorize_fire
from .context import ApiContext, ApiError, context, shown
from .fire import checked_name, record_api_fire
from .openapi import returns
from .params import accepts, one_of, read_body, read_query, text_filter, whole_number
from .runs import run_url
from .schemas import Json, Out

MAX_TEXT = 20_000


class FireRoutineBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    text: str | None = pydantic.Field(
        None, max_length=MAX_TEXT, description="Appended to the routine's prompt for this run"
    )


class RoutineFired(Out):
    run_id: str
    url: str = pydantic.Field(description="The run in the API: /api/runs/{run_id}")


class RoutineOut(Out):
    name: str
    kind: str = pydantic.Field(description="personal (owner: a user) or managed (run_as)")
    runs_as: str
    mode: str
    model: str
    triggers: list[str]
    billing: str | None
    file: str


class ProblemOut(Out):
    file: str
    line: int
    column: int
    message: str = pydantic.Field(description="What is wrong, and what is allowed")


class RoutineList(Out):
    routines: list[RoutineOut]
    problems: list[ProblemOut] = pydantic.Field(description="Files that did not load")


class DroppedRunOut(Out):
    id: str = pydantic.Field(description="The run's id; a deferred run is queued under it")
    name: str
    principal: str | None
    trigger: str
    outcome: str = pydantic.Field(description="dropped or deferred")
    reason: str
    at: str | None
    deferred_to: str | None


class DroppedRunList(Out):
    items: list[DroppedRunOut]


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/routines", list_routines, methods=["GET"]),
        Route("/api/routines/{name}/fire", fire_routine, methods=["POST"]),
        Route("/api/dropped-runs", list_dropped_runs, methods=["GET"]),
    ]


@returns(RoutineList)
@accepts()
async def list_routines(request: Request) -> Response:
    """The routines the app loaded, and the problems of the files it could not load, each
    `file:line:column: message` (viewer)."""
    await authorize(request, "viewer")
    read_query(request)
    routines = context(request).app.routines
    return Json(
        {
            "routines": [summary(r) for r in routines.loaded.values()],
            "problems": [asdict(p) for p in routines.problems],
        }
    )


@returns(DroppedRunList)
@accepts(
    query={
        "name": text_filter(),
        "outcome": one_of((DROPPED, DEFERRED, ""), default=""),
        "limit": whole_number(1, 500, default=50),
    }
)
async def list_dropped_runs(request: Request) -> Response:
    """Runs a cap dropped or deferred when they were enqueued, newest first, with the
    reason (viewer): what `rota runs list --dropped` shows."""
    await authorize(request, "viewer")
    q = read_query(request)
    ctx = context(request)
    names = (q["name"],) if q["name"] else ()
    found = await ctx.db(lambda: ctx.app.store.capped_runs(names, q["outcome"] or None, q["limit"]))
    return Json({"items": [capped_json(r) for r in found]})


@returns(RoutineFired, status=202, errors=(409,))
@accepts(body=FireRoutineBody)
async def fire_routine(request: Request) -> Response:
    """Fire a routine now with a token made by `rota tokens create --fire NAME`: the run's
    id and URL (409 when the routine has no api trigger or the run is over its caps)."""
    name = checked_name(request, "a routine's")
    principal = await authorize_fire(request, name)
    read_query(request)
    body: FireRoutineBody = await read_body(request)
    ctx = context(request)
    actor = admin.actor_of(principal)

    def enqueue() -> str:
        routine = ctx.app.routines.get(name)
        if not ctx.app.routines.built[name].fires_over_api:
            raise ApiError(
                409,
                "no_api_trigger",
                f"routine {shown(name)!r} cannot be fired over HTTP: add `- api: true` to the "
                f"triggers in {shown(routine.path)}",
            )
        payload = None if body.text is None else {"text": body.text}
        handle = ctx.app.run_now(name, payload, trigger="api", actor=actor)
        record_api_fire(ctx.app.store, actor, name, handle.id)
        return handle.id

    try:
        run_id = await ctx.db(enqueue)
    except RoutineNotFound:
        raise ApiError(404, "not_found", f"no routine named '{shown(name)}'") from None
    except RunDropped as exc:
        raise ApiError(409, "capped", str(exc)) from None
    except (UnknownPrincipal, PrincipalDisabled) as exc:
        raise ApiError(409, "run_as_refused", f"{shown(name)!r} cannot run now: {exc}") from None
    return Json({"run_id": run_id, "url": run_url(run_id)}, status_code=202)
