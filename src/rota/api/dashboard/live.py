"""`/live`: the API's run and approval event stream (api/stream.py) for a signed-in browser,
which cannot send a bearer token from an EventSource. `static/dashboard.js` listens to it and
asks htmx to refresh the parts of a page marked `data-live`."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..context import ApiContext
from ..params import accepts, read_query
from ..stream import event_id_param, event_stream
from .guard import Viewer, holds_session, page


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/live", live, methods=["GET"], include_in_schema=False)]


@page("viewer")
@accepts(query={"last_event_id": event_id_param()})
async def live(request: Request, viewer: Viewer) -> Response:
    """Server-sent events: `run` and `approval` changes, resumable with Last-Event-ID; the
    stream ends once the session does (signed out, expired, principal disabled)."""
    after = read_query(request)["last_event_id"]
    return event_stream(request, after, lambda: holds_session(request, "viewer"))
