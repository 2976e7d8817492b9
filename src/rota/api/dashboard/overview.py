"""`/`: the overview. What ran today and how it went, what is queued and waiting, which
schedules and budgets need a look; every figure links to the runs behind it (`/runs?...`,
the Runs page's filters: name, kind, state, principal, trigger, since, until, q)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...clock import iso
from ..context import ApiContext, context
from ..params import accepts, read_query
from .figures import overview_figures
from .guard import Viewer, page
from .render import NavEntry, render

NAV = NavEntry("Overview", "/", "o", 0)


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/", overview, methods=["GET"], include_in_schema=False)]


def runs_link(**filters: str | None) -> str:
    """A link to the Runs page with these filters (empty ones left out)."""
    query = urlencode({k: v for k, v in filters.items() if v})
    return "/runs" + (f"?{query}" if query else "")


@page("viewer")
@accepts()
async def overview(request: Request, viewer: Viewer) -> Response:
    """The overview page."""
    read_query(request)
    ctx = context(request)
    figures = await ctx.db(overview_figures, ctx.app)
    return render(
        request,
        "overview.html",
        o=figures,
        today=iso(figures.day_start),
        hour_ago=iso(figures.now - 3600),
        runs_link=runs_link,
        defined=sorted(ctx.app.definitions),
    )
