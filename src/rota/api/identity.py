"""Identity over HTTP: `GET /api/whoami` (any valid token) and `GET /api/audit` (viewer).

The dashboard issue adds runs, approvals and costs; each protects itself with `authorize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import authorize
from .context import ApiContext, context
from .cursors import cursor, encode, shaped
from .openapi import returns
from .params import BadRequest, accepts, read_query, text_filter, whole_number
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
        "cursor": cursor(),
    }
)
@returns(list[AuditRecord])
async def audit(request: Request) -> Response:
    """Audit records, newest first (viewer). The answer is a list, as it has been since the
    route came; when there are more, the `Link` header (rel="next") and `X-Next-Cursor` give
    the next page's cursor."""
    await authorize(request, "viewer")
    query = read_query(request)
    after = shaped(query["cursor"], float)
    before_seq = None if after is None else float(after[0])
    if before_seq is not None and not (before_seq.is_integer() and 0 <= before_seq < 2**53):
        raise BadRequest("query parameter cursor must be a cursor from X-Next-Cursor")
    limit: int = query["limit"]
    ctx = context(request)
    records = await ctx.db(
        lambda: ctx.app.store.audit_records(
            principal=query["principal"],
            action=query["action"],
            limit=limit + 1,  # one more: is there a next page?
            before_seq=None if before_seq is None else int(before_seq),
        )
    )
    shown = records[:limit]
    answer = JSONResponse([r.to_json() for r in shown])
    if len(records) > limit:
        next_cursor = encode((shown[-1].seq,))
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        target = f"/api/audit?{urlencode({**params, 'cursor': next_cursor})}"
        answer.headers["Link"] = f'<{target}>; rel="next"'
        answer.headers["X-Next-Cursor"] = next_cursor
    return answer
