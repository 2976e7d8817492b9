"""Bearer-token authentication and role checks for the HTTP API.

`await authorize(request, "viewer")` returns the principal the request's
`Authorization: Bearer rota_...` token stands for, or raises `Denied`, which the API answers
with 401 (no token, or one that does not authenticate: unknown, malformed, revoked, expired,
or its principal disabled) or 403 (authenticated, lacking the role). Both are audited.
Roles nest: admin > operator > viewer; approver:<group> is separate (approvals).
"""

from __future__ import annotations

from starlette.requests import Request

from ..identity import tokens
from ..identity.principals import Principal
from ..storage.audit import AUTH_DENIED
from .context import ApiError, context, shown

_IMPLIED = {"viewer": ("viewer", "operator", "admin"), "operator": ("operator", "admin")}


class Denied(ApiError):
    def __init__(self, status: int, error: str, message: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="rota"'} if status == 401 else None
        super().__init__(status, error, message, headers=headers)


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
        # The path is the caller's: escaped and cut, so that what we audit can be stored.
        where = f"{request.method} {shown(request.url.path, 200)}"
        await ctx.db(
            lambda: ctx.app.store.audit(
                principal.name,
                AUTH_DENIED,
                actor_kind=principal.actor_kind,
                subject=where,
                detail={"reason": f"lacks role {role}", "roles": sorted(principal.roles)},
            )
        )
        raise Denied(
            403,
            "forbidden",
            f"principal {principal.name!r} lacks the role {role!r} that {where} needs (grant "
            f"it with `rota principals grant {principal.name} --role {role}`)",
        )
    return principal
