"""`/costs`: what the runs started in a time range cost, as inline SVG charts with the
table beside each: by day, by job/agent/principal/model, job vs agent vs hybrid, the plan
comparison (with the runs each plan's caps dropped, and its forecast), and the shared
budgets used against their limits. `since` and `until` are what `rota cost report` takes
(a duration ago, 30d, or an ISO time); a bad one is a 400 page naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...clock import iso
from ...durations import ago_or_time
from ..context import ApiContext, context
from ..cost import moment
from ..params import BadRequest, accepts, read_query
from .charts import Point
from .costs_figures import PLANS_ENV, CostFigures, cost_figures
from .forms import blank_is_none
from .guard import Viewer, page
from .render import NavEntry, render

NAV = NavEntry("Costs", "/costs", "c", 45)
DEFAULT_SINCE = "30d"
CHARTED = 12  # bars in a chart; the table beside lists every row
RANGES = ("24h", "7d", "30d", "90d")  # the quick links above the filter


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/costs", costs_page, methods=["GET"], include_in_schema=False)]


@page("viewer")
@accepts(query={"since": blank_is_none(moment()), "until": blank_is_none(moment())})
async def costs_page(request: Request, viewer: Viewer) -> Response:
    """The Costs page for [since, until) (default: the last 30 days)."""
    query = read_query(request)
    ctx = context(request)
    now = ctx.app.clock.now()
    since_text = query["since"] or DEFAULT_SINCE
    since = ago_or_time(since_text, now, what="since")
    until = now if query["until"] is None else ago_or_time(query["until"], now, what="until")
    if not since < until:
        raise BadRequest(
            f"query parameter since ({iso(since)}) must be before until ({iso(until)})"
        )
    figures = await ctx.db(cost_figures, ctx.app, since, until)
    return render(
        request,
        "costs.html",
        f=figures,
        since=since_text,
        until=query["until"] or "",
        ranges=RANGES,
        plans_env=PLANS_ENV,
        charts=chart_points(figures),
        dropped=[(r.name, d) for r in figures.comparison.results for d in r.dropped],
    )


def chart_points(f: CostFigures) -> dict[str, list[Point]]:
    """The (label, value) points of each chart on the page (the first CHARTED of a table)."""
    charts = {
        k: [(r.key, float(r.total_usd)) for r in rows[:CHARTED]] for k, rows in f.groups.items()
    }
    charts["day"] = [(day, float(usd)) for day, usd in f.by_day]
    charts["model"] = [(m.key, float(m.usd)) for m in f.by_model[:CHARTED]]
    charts["plans"] = [(r.name, float(r.total)) for r in f.comparison.results[:CHARTED]]
    charts["budgets"] = [
        (f"{u.status.budget.key} {u.unit}", round(u.share * 100, 1)) for u in f.budgets[:CHARTED]
    ]
    return charts
