"""Approvals over HTTP: `GET /api/approvals`, `POST /api/approvals/{id}/approve|reject`.

Any valid API token may call these; what it may see and decide depends on its principal:
a viewer (or operator, admin) sees every request, anyone else only those it may decide
(role `approver:<group>` of one of the request's groups). Deciding is checked again by the
store, in the transaction that records the decision: 403 for a principal that is not an
approver (audited), 409 for a request that is no longer pending or past its deadline, 404
for an unknown id.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..approvals.records import PENDING, STATUSES, check_comment, may_decide
from ..errors import ApprovalNotFound, ApprovalRefused, ConfigError
from .auth import Denied, authorize, holds_role
from .context import ApiContext, context, problem


class DecisionBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    comment: str | None = None


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/approvals", list_approvals, methods=["GET"]),
        Route("/api/approvals/{id}/approve", approve, methods=["POST"]),
        Route("/api/approvals/{id}/reject", reject, methods=["POST"]),
    ]


async def list_approvals(request: Request) -> Response:
    try:
        principal = await authorize(request, "")
    except Denied as denied:
        return denied.response()
    status = request.query_params.get("status", PENDING)
    if status not in (*STATUSES, "all"):
        return problem(400, "bad_request", f"status must be one of {', '.join(STATUSES)} or all")
    try:
        limit = min(int(request.query_params.get("limit", "100")), 1000)
    except ValueError:
        return problem(400, "bad_request", "limit must be a whole number (at most 1000)")
    ctx = context(request)
    statuses = () if status == "all" else (status,)
    viewer = holds_role(principal, "viewer")
    # An approver sees only what it may decide: filtered here, so read a wider window first
    # (the newest 1,000) and cut to the limit after filtering.
    window = limit if viewer else 1000
    found = await ctx.db(lambda: ctx.app.store.approvals(statuses=statuses, limit=window))
    if not viewer:
        found = [r for r in found if may_decide(principal, r.approvers)][:limit]
    return JSONResponse([r.to_json() for r in found])


async def approve(request: Request) -> Response:
    return await _decide(request, approve=True)


async def reject(request: Request) -> Response:
    return await _decide(request, approve=False)


async def _decide(request: Request, *, approve: bool) -> Response:
    try:
        principal = await authorize(request, "")
    except Denied as denied:
        return denied.response()
    try:
        raw = await request.body()
        body = DecisionBody.model_validate_json(raw) if raw.strip() else DecisionBody()
        comment = check_comment(body.comment)
    except (pydantic.ValidationError, ConfigError) as exc:
        return problem(400, "bad_request", f'the body must be {{"comment": "..."}}: {exc}')
    ctx = context(request)
    approval_id = request.path_params["id"]
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
