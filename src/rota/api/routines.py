"""`POST /api/routines/{name}/fire`: fire a routine over HTTP, the hosted fire endpoint's
shape. The body's `text` is appended to the routine's prompt for this run; the answer is the
run's id and URL.

Allowed to a token made for this routine with `rota tokens create --fire NAME` (shown once),
to a principal holding the scope `fire:<name>`, and to an operator (api/auth.py): a fire token
for one routine is refused (403) for every other. The routine must list `- api: true` among
its triggers. The run is requested by the token's principal (audited) and runs as the
routine's owner or service account. A run over the routine's caps is answered 409 `capped`
(dropped, and recorded); a deferred one is 202 with the run, due in the next window.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..identity import admin
from ..identity.audit import record
from ..identity.principals import PrincipalDisabled, UnknownPrincipal
from ..routines import RoutineNotFound, RunDropped
from ..storage.audit import RUN_REQUESTED
from .auth import authorize_fire
from .context import ApiContext, ApiError, context, shown
from .fire import checked_name
from .openapi import returns
from .params import accepts, read_body, read_query
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


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/api/routines/{name}/fire", fire_routine, methods=["POST"])]


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
        record(
            ctx.app.store,
            actor.name,
            RUN_REQUESTED,
            actor_kind=actor.kind,
            subject=name,
            run_id=handle.id,
            via="api",
        )
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
