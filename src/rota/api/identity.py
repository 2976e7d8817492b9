"""Identity over HTTP: `GET /api/whoami` (any valid token) and `GET /api/audit` (viewer).

The dashboard issue adds runs, approvals and costs; each protects itself with `authorize`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import Denied, authorize
from .context import ApiContext, context, problem


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/whoami", whoami, methods=["GET"]),
        Route("/api/audit", audit, methods=["GET"]),
    ]


async def whoami(request: Request) -> Response:
    try:
        principal = await authorize(request, "")
    except Denied as denied:
        return denied.response()
    return JSONResponse(
        {
            "name": principal.name,
            "kind": principal.kind,
            "scopes": sorted(principal.scopes),
            "roles": sorted(principal.roles),
        }
    )


async def audit(request: Request) -> Response:
    try:
        await authorize(request, "viewer")
    except Denied as denied:
        return denied.response()
    try:
        limit = min(int(request.query_params.get("limit", "100")), 1000)
    except ValueError:
        return problem(400, "bad_request", "limit must be a whole number (at most 1000)")
    ctx = context(request)
    records = await ctx.db(
        lambda: ctx.app.store.audit_records(
            principal=request.query_params.get("principal"),
            action=request.query_params.get("action"),
            limit=limit,
        )
    )
    return JSONResponse([r.to_json() for r in records])
