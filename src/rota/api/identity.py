"""Identity over HTTP: `GET /api/whoami` (any valid token) and `GET /api/audit` (viewer).

The dashboard issue adds runs, approvals and costs; each protects itself with `authorize`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import authorize
from .context import ApiContext, context
from .openapi import returns
from .params import accepts, read_query, text_filter, whole_number
from .schemas import AuditRecord, Whoami


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/whoami", whoami, methods=["GET"]),
        Route("/api/audit", audit, methods=["GET"]),
    ]


@returns(Whoami)
@accepts()
async def whoami(request: Request) -> Response:
    """The principal the token stands for, with its scopes and roles."""
    principal = await authorize(request, "")
    read_query(request)
    return JSONResponse(
        {
            "name": principal.name,
            "kind": principal.kind,
            "scopes": sorted(principal.scopes),
            "roles": sorted(principal.roles),
        }
    )


@accepts(
    query={
        "limit": whole_number(1, 1000, default=100),
        "principal": text_filter(),
        "action": text_filter(),  # exact, or a prefix: "approval.*"
    }
)
@returns(list[AuditRecord])
async def audit(request: Request) -> Response:
    """Audit records, newest first (viewer)."""
    await authorize(request, "viewer")
    query = read_query(request)
    ctx = context(request)
    records = await ctx.db(
        lambda: ctx.app.store.audit_records(
            principal=query["principal"], action=query["action"], limit=query["limit"]
        )
    )
    return JSONResponse([r.to_json() for r in records])
