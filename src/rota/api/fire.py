"""`POST /api/jobs/{name}/runs`: fire a job, workflow or agent now, over HTTP.

Allowed to an operator, to a principal holding the scope `fire:<name>`, and to a token made
for that one job with `rota tokens create --fire NAME` (api/auth.py). The run is requested by
the token's principal (audited as the actor) and runs as the job's own `run_as`. The answer
names the run and where to follow it: 202 for a new run, 200 when the idempotency key was
used before (the run it made then; nothing new is enqueued).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..alerts.watchdog import INTERNAL_PREFIX
from ..errors import SerializationError, UnknownJobError
from ..identity import admin
from ..identity.audit import record
from ..identity.principals import PrincipalDisabled, UnknownPrincipal
from ..storage.audit import RUN_REQUESTED
from ..storage.base import AuditLog
from .auth import authorize_fire
from .context import ApiContext, ApiError, context, shown
from .openapi import returns
from .params import BadRequest, accepts, read_body, read_query, unprintable
from .runs import run_url
from .schemas import Json, Out

MAX_NAME = 200
MAX_KEY = 200


class FireBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    payload: Any = None
    idempotency_key: str | None = None


class Fired(Out):
    run_id: str
    name: str
    url: str = pydantic.Field(description="The run in the API: /api/runs/{run_id}")
    created: bool = pydantic.Field(description="False: the idempotency key was used before")
    state: str


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/api/jobs/{name}/runs", fire, methods=["POST"])]


def record_api_fire(store: AuditLog, actor: admin.Actor, name: str, run_id: str) -> None:
    """Audit who fired `name` over HTTP, as `rota run` records it (jobs and routines)."""
    record(
        store,
        actor.name,
        RUN_REQUESTED,
        actor_kind=actor.kind,
        subject=name,
        run_id=run_id,
        via="api",
    )


def checked_name(request: Request, what: str) -> str:
    """A name from the path (a job's, an event's): text rota can store, or 400."""
    name: str = request.path_params["name"]
    bad = unprintable(name)
    if not name or len(name) > MAX_NAME or bad is not None:
        raise BadRequest(
            f"path parameter name must be {what} name: 1 to {MAX_NAME} characters without "
            f"control characters; got '{shown(name)}'"
        )
    return name


def refuse_internal(name: str) -> None:
    """rota's own jobs (`rota:alert`, `rota:approval-webhook`) take a payload only rota makes:
    fired by hand, each run would fail and retry to no purpose."""
    if name.startswith(INTERNAL_PREFIX):
        raise ApiError(
            403,
            "forbidden",
            f"'{shown(name)}' is one of rota's own jobs ({INTERNAL_PREFIX}...): rota enqueues "
            "it itself; fire your own jobs, workflows and agents",
        )


def checked_key(key: str | None) -> str | None:
    if key is not None and (not key or len(key) > MAX_KEY or unprintable(key) is not None):
        raise BadRequest(
            f"idempotency_key must be 1 to {MAX_KEY} characters without control characters; "
            f"got '{shown(key)}'"
        )
    return key


@returns(Fired, status=202, more={200: Fired}, errors=(409,))
@accepts(body=FireBody)
async def fire(request: Request) -> Response:
    """Fire a job, workflow or agent now: the run's id and URL (operator, scope fire:NAME,
    or a token made with `rota tokens create --fire NAME`)."""
    name = checked_name(request, "a job's")
    principal = await authorize_fire(request, name)
    refuse_internal(name)
    read_query(request)
    body: FireBody = await read_body(request)
    key = checked_key(body.idempotency_key)
    ctx = context(request)
    actor = admin.actor_of(principal)

    def enqueue() -> tuple[str, bool, str]:
        handle = ctx.app.run_now(
            name, body.payload, idempotency_key=key, trigger="api", actor=actor
        )
        if handle.created:  # who fired it, as `rota run` records it
            record_api_fire(ctx.app.store, actor, name, handle.id)
        return handle.id, handle.created, handle.get().state.value

    try:
        run_id, created, state = await ctx.db(enqueue)
    except UnknownJobError:  # not the list of known names: a scoped caller need not see it
        raise ApiError(
            404, "not_found", f"no job, workflow or agent named '{shown(name)}' in this app"
        ) from None
    except SerializationError as exc:  # NaN or Infinity in the payload
        raise BadRequest(str(exc)) from None
    except (UnknownPrincipal, PrincipalDisabled) as exc:
        raise ApiError(409, "run_as_refused", f"{name!r} cannot run now: {exc}") from None
    return Json(
        {
            "run_id": run_id,
            "name": name,
            "url": run_url(run_id),
            "created": created,
            "state": state,
        },
        status_code=202 if created else 200,
    )
