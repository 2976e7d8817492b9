"""Events over HTTP: emit (`POST /api/events/{name}`, as `app.emit` and `rota events emit`
do), list (newest first, keyset pages) and replay a stored event.

Viewers list; operators emit and replay. An emitted event is stored with source `api` and
enqueues a run of every job whose trigger matches it; an idempotency key used before stores
nothing and enqueues nothing (200, naming the event it made then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..app import App, Emitted
from ..errors import ConfigError, EventNotFound, SerializationError
from ..storage.run_views import event_json
from .auth import authorize
from .context import ApiContext, ApiError, context
from .fire import checked_key, checked_name
from .openapi import returns
from .params import (
    BadRequest,
    accepts,
    an_id,
    path_id,
    read_body,
    read_query,
    text_filter,
    whole_number,
)
from .runs import run_url
from .schemas import Json, Out

API_SOURCE = "api"


class EmitBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    payload: Any = None
    idempotency_key: str | None = None


class EnqueuedRun(Out):
    id: str
    name: str
    url: str


class EmittedOut(Out):
    event_id: str
    name: str
    created: bool = pydantic.Field(description="False: the idempotency key was used before")
    runs: list[EnqueuedRun]


class EventOut(Out):
    id: str
    name: str
    source: str
    idempotency_key: str | None
    created_at: str | None
    payload: Any


class EventPage(Out):
    items: list[EventOut]
    next_cursor: str | None


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/events", list_events, methods=["GET"]),
        Route("/api/events/{name}", emit, methods=["POST"]),
        Route("/api/events/{id}/replay", replay, methods=["POST"]),
    ]


@returns(EventPage)
@accepts(
    query={
        "name": text_filter(),
        "cursor": an_id("the next_cursor of the previous page"),
        "limit": whole_number(1, 500, default=50),
    }
)
async def list_events(request: Request) -> Response:
    """Stored events (app.emit, webhooks, the API), newest first (viewer)."""
    await authorize(request, "viewer")
    q = read_query(request)
    ctx = context(request)
    found = await ctx.db(
        lambda: ctx.app.store.events(q["name"], q["limit"] + 1, before_id=q["cursor"])
    )
    page, more = found[: q["limit"]], len(found) > q["limit"]
    return Json(
        {"items": [event_json(e) for e in page], "next_cursor": page[-1].id if more else None}
    )


@returns(EmittedOut, status=202, more={200: EmittedOut})
@accepts(body=EmitBody)
async def emit(request: Request) -> Response:
    """Emit an event: stored, and a run enqueued for every job it triggers (operator)."""
    name = checked_name(request, "an event's")
    await authorize(request, "operator")
    read_query(request)
    body: EmitBody = await read_body(request)
    key = checked_key(body.idempotency_key)
    ctx = context(request)

    def store() -> dict[str, Any]:
        emitted = ctx.app.emit(name, body.payload, idempotency_key=key, source=API_SOURCE)
        return emitted_json(ctx.app, name, emitted)

    try:
        shown = await ctx.db(store)
    except (SerializationError, ConfigError) as exc:  # NaN in the payload, ...
        raise BadRequest(str(exc)) from None
    return Json(shown, status_code=202 if shown["created"] else 200)


@returns(EmittedOut, status=202)
@accepts()
async def replay(request: Request) -> Response:
    """Enqueue the runs a stored event triggers, again (operator)."""
    await authorize(request, "operator")
    read_query(request)
    event_id = path_id(request, "id", "an event")
    ctx = context(request)

    def again() -> dict[str, Any]:
        event = ctx.app.store.get_event(event_id)
        return emitted_json(ctx.app, event.name, ctx.app.replay_event(event.id))

    try:
        shown = await ctx.db(again)
    except EventNotFound as exc:
        raise ApiError(404, "not_found", f"{exc}; list events with GET /api/events") from None
    return Json({**shown, "created": True}, status_code=202)


def emitted_json(app: App, name: str, emitted: Emitted) -> dict[str, Any]:
    runs = [app.get_run(handle.id) for handle in emitted.runs]
    return {
        "event_id": emitted.event_id,
        "name": name,
        "created": emitted.created,
        "runs": [{"id": r.id, "name": r.name, "url": run_url(r.id)} for r in runs],
    }
