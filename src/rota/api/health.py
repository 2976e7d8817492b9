"""`GET /healthz`: 200 when the store answers, 503 when it does not (for load balancers)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .context import DB_ERRORS, ApiContext, context, database_unavailable
from .openapi import returns
from .schemas import Health


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"])]


@returns(Health, public=True)
async def healthz(request: Request) -> Response:
    """200 when the database answers, 503 when it does not."""
    ctx = context(request)
    try:
        version = await ctx.db(lambda: ctx.app.store.schema_version())
    except DB_ERRORS as exc:
        return database_unavailable(
            request, exc, f"the database does not answer ({type(exc).__name__}); see the server log"
        )
    dialect = ctx.app.database_url.dialect
    return JSONResponse(
        {
            "status": "ok",
            "database": dialect,
            "schema_version": version,
            "message": f"the {dialect} database answers (schema version {version})",
        }
    )
