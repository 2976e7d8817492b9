"""`GET /metrics`: Prometheus' text format, for a scraper.

Served without a token, like most exporters: it holds counts, durations, job, schedule,
agent and budget names, never payloads, secrets or tokens. Where those names are not for
everyone who can reach the port, keep the API on a private address or put the route behind
the proxy's access rules (docs/observability.md#prometheus).

What it serves: this process's counters and histograms (the runs a `rota dev` worker
finished, the webhook deliveries this API refused, ...) and the store's gauges, read at most
every few seconds however often it is scraped (rota.observability.collectors).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..observability.collectors import CONTENT_TYPE, StoreGauges, exposition, registry
from .context import ApiContext
from .openapi import returns
from .params import accepts, read_query


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    app = ctx.app
    gauges = StoreGauges(lambda: app.store, app.budgets, now=app.clock.now)
    served = registry(gauges)

    @returns(str, public=True, media_type=CONTENT_TYPE.split(";")[0])
    @accepts()
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: this process's counters and the store's gauges."""
        read_query(request)  # no parameters: a typo is a 400, not a silent default
        body = await ctx.db(exposition, served)
        return Response(body, media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]
