"""`GET /api/audit/verify`: check the hash-chained audit log, as `rota audit verify` does
(rota.identity.audit.verify_chain). The list, `GET /api/audit`, is in api/identity.py.

A broken chain is still a 200: the check ran, and `ok` and `problems` say what it found.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..identity.audit import verify_chain
from .answers import answer
from .auth import authorize
from .context import ApiContext, context
from .openapi import returns
from .params import accepts, read_query
from .schemas import Out


class AuditHeadOut(Out):
    seq: int
    hash: str


class AuditProblemOut(Out):
    check: str  # hash | link | missing | head
    seq: int | None
    id: str | None
    message: str


class AuditVerifyOut(Out):
    ok: bool
    checked: int
    head: AuditHeadOut | None
    problems: list[AuditProblemOut]


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/api/audit/verify", verify, methods=["GET"])]


@returns(AuditVerifyOut)
@accepts()
async def verify(request: Request) -> Response:
    """Check the audit log's hash chain; every edited or deleted record is named (viewer)."""
    await authorize(request, "viewer")
    read_query(request)
    ctx = context(request)
    report = await ctx.db(lambda: verify_chain(ctx.app.store))
    return answer(AuditVerifyOut, report.to_json())
