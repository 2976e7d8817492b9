"""`/routines`: the routines the app loaded (who each runs as, its model, triggers and
billing), the routine files that did not load with their `file:line:column` problems, and
the runs caps dropped or deferred, newest first, with their reasons (filtered by routine and
outcome). The same data as `GET /api/routines` and `GET /api/dropped-runs`."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...routines.overview import summary
from ...storage.capped import DEFERRED, DROPPED
from ..context import ApiContext, context
from ..params import accepts, one_of, read_query, text_filter
from .forms import blank_is_none
from .guard import Viewer, page
from .render import NavEntry, render

NAV = NavEntry("Routines", "/routines", "e", 42)
HELD_SHOWN = 50


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/routines", routines_page, methods=["GET"], include_in_schema=False)]


@page("viewer")
@accepts(
    query={
        "name": text_filter(),
        "outcome": blank_is_none(one_of((DROPPED, DEFERRED, ""), default="")),
    }
)
async def routines_page(request: Request, viewer: Viewer) -> Response:
    """The routines page."""
    q = read_query(request)
    ctx = context(request)
    routines = ctx.app.routines
    names = (q["name"],) if q["name"] else ()
    held = await ctx.db(lambda: ctx.app.store.capped_runs(names, q["outcome"] or None, HELD_SHOWN))
    return render(
        request,
        "routines.html",
        routines=[summary(r) for r in routines.loaded.values()],
        problems=routines.problems,
        held=held,
        filters={k: v for k, v in q.items() if v},
    )
