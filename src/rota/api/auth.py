"""Bearer-token authentication and role checks for the HTTP API.

`await authorize(request, "viewer")` returns the principal the request's
`Authorization: Bearer rota_...` token stands for, or raises `Denied`, which the API answers
with 401 (no token, or one that does not authenticate: unknown, malformed, revoked, expired,
or its principal disabled) or 403 (authenticated, lacking the role). Both are audited.
Roles nest: admin > operator > viewer; approver:<group> is separate (approvals).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..identity import tokens
from ..identity.audit import AUTH_DENIED
from ..identity.principals import Principal
from .context import context, problem

_IMPLIED = {"viewer": ("viewer", "operator", "admin"), "operator": ("operator", "admin")}


class Denied(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="rota"'} if self.status == 401 else None
        return problem(self.status, self.error, self.message, headers=headers)


def holds_role(principal: Principal, role: str) -> bool:
    """ "" (no role) is any authenticated principal."""
    return not role or any(principal.has_role(r) for r in _IMPLIED.get(role, (role,)))


async def authorize(request: Request, role: str) -> Principal:
    ctx = context(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied(
            401,
            "unauthenticated",
            "this endpoint needs an API token: send `Authorization: Bearer <token>` (make one "
            "with `rota tokens create PRINCIPAL`)",
        )
    try:
        principal = await ctx.db(tokens.authenticate, ctx.app.store, token)
    except tokens.TokenRefused as exc:
        raise Denied(401, "invalid_token", f"the API token was refused: {exc}") from None
    if not holds_role(principal, role):
        await ctx.db(
            lambda: ctx.app.store.audit(
                principal.name,
                AUTH_DENIED,
                actor_kind=principal.actor_kind,
                subject=f"{request.method} {request.url.path}",
                detail={"reason": f"lacks role {role}", "roles": sorted(principal.roles)},
            )
        )
        raise Denied(
            403,
            "forbidden",
            f"principal {principal.name!r} lacks the role {role!r} that "
            f"{request.method} {request.url.path} needs (grant it with `rota principals grant "
            f"{principal.name} --role {role}`)",
        )
    return principal
