"""Approvals over HTTP: `GET /api/approvals`, `POST /api/approvals/{id}/approve|reject`.

Any valid API token may call these; what it may see and decide depends on its principal:
a viewer (or operator, admin) sees every request, anyone else only those it may decide
(role `approver:<group>` of one of the request's groups). Deciding is checked again by the
store, in the transaction that records the decision: 403 for a principal that is not an
approver (audited), 409 for a request that is no longer pending or past its deadline, 404
for an unknown id, 400 for a malformed id or body (nothing is decided).
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import ApprovalNotFound, ApprovalRefused
from ..storage.approval_records import MAX_COMMENT, PENDING, STATUSES, check_comment, may_decide
from .auth import authorize, holds_role
from .context import ApiContext, context, problem
from .openapi import returns
from .params import accepts, free_text, one_of, path_id, read_body, read_query, whole_number
from .schemas import Approval


class DecisionBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    comment: str | None = None


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/approvals", list_approvals, methods=["GET"]),
        Route("/api/approvals/{id}/approve", approve, methods=["POST"]),
        Route("/api/approvals/{id}/reject", reject, methods=["POST"]),
    ]


@returns(list[Approval])
@accepts(
    query={
        "status": one_of((*STATUSES, "all"), default=PENDING),
        "limit": whole_number(1, 1000, default=100),
    }
)
async def list_approvals(request: Request) -> Response:
    """Approval requests, newest first: all for a viewer, else those the caller may decide."""
    principal = await authorize(request, "")
    query = read_query(request)
    limit: int = query["limit"]
    ctx = context(request)
    statuses = () if query["status"] == "all" else (query["status"],)
    viewer = holds_role(principal, "viewer")
    # An approver sees only what it may decide: filtered here, so read a wider window first
    # (the newest 1,000) and cut to the limit after filtering.
    window = limit if viewer else 1000
    found = await ctx.db(lambda: ctx.app.store.approvals(statuses=statuses, limit=window))
    if not viewer:
        found = [r for r in found if may_decide(principal, r.approvers)][:limit]
    return JSONResponse([r.to_json() for r in found])


@returns(Approval, errors=(409,))
@accepts(body=DecisionBody)
async def approve(request: Request) -> Response:
    """Approve a pending request (an approver of one of its groups, or an admin)."""
    return await _decide(request, approve=True)


@returns(Approval, errors=(409,))
@accepts(body=DecisionBody)
async def reject(request: Request) -> Response:
    """Reject a pending request (an approver of one of its groups, or an admin)."""
    return await _decide(request, approve=False)


async def _decide(request: Request, *, approve: bool) -> Response:
    principal = await authorize(request, "")
    read_query(request)
    approval_id = path_id(request, "id", "an approval")
    body: DecisionBody = await read_body(request)
    comment = check_comment(free_text("comment", body.comment, max_len=MAX_COMMENT))
    ctx = context(request)
    try:
        decided = await ctx.db(
            lambda: ctx.app.store.decide_approval(
                approval_id,
                principal.name,
                approve,
                comment,
                ctx.app.clock.now(),
                via="api",
            )
        )
    except ApprovalNotFound as exc:
        return problem(404, "not_found", str(exc))
    except ApprovalRefused as exc:
        if exc.state == "forbidden":
            return problem(403, "forbidden", str(exc))
        return JSONResponse(
            {"error": "conflict", "state": exc.state, "message": str(exc)}, status_code=409
        )
    ctx.app._wake_local()  # a worker in this process (rota dev) resumes the run at once
    return JSONResponse(decided.to_json())
