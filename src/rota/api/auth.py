"""Bearer-token authentication and role checks for the HTTP API.

`await authorize(request, "viewer")` returns the principal the request's
`Authorization: Bearer rota_...` token stands for, or raises `Denied`, which the API answers
with 401 (no token, or one that does not authenticate: unknown, malformed, revoked, expired,
or its principal disabled) or 403 (authenticated, lacking the role). Both are audited.
Roles nest: admin > operator > viewer; approver:<group> is separate (approvals).

Firing a job (`await authorize_fire(request, name)`) is allowed to an operator, to a
principal holding the scope `fire:<name>`, and to a token made for that one job (`rota tokens
create --fire NAME`), which every other route refuses with 403.
"""

from __future__ import annotations

from typing import NoReturn

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
    grant = await _grant(request)
    principal = grant.principal
    if grant.fire is not None:
        await _refuse(
            request,
            principal,
            f"token {grant.token_id} may only fire {grant.fire!r}",
            f"this token may only fire {shown(grant.fire)!r} (POST /api/jobs/{{name}}/runs); "
            "make a token without --fire for anything else",
        )
    if not holds_role(principal, role):
        where = f"{request.method} {shown(request.url.path, 200)}"
        await _refuse(
            request,
            principal,
            f"lacks role {role}",
            f"principal {principal.name!r} lacks the role {role!r} that {where} needs (grant "
            f"it with `rota principals grant {principal.name} --role {role}`)",
        )
    return principal


async def authorize_fire(request: Request, job: str) -> Principal:
    """The caller, when it may fire `job` (see the module docstring); Denied otherwise."""
    grant = await _grant(request)
    principal = grant.principal
    if grant.fire is not None:
        if grant.fire == job:
            return principal
        reason = f"token {grant.token_id} may only fire {grant.fire!r}"
        message = (
            f"this token may only fire {shown(grant.fire)!r}, not {shown(job)!r}; make a "
            f"token for this one with `rota tokens create --fire {shown(job)}`"
        )
        await _refuse(request, principal, reason, message)
    if principal.holds(f"fire:{job}") or holds_role(principal, "operator"):
        return principal
    await _refuse(
        request,
        principal,
        f"lacks scope fire:{job}",
        f"principal {principal.name!r} may not fire {shown(job)!r}: it needs the scope "
        f"fire:{shown(job)} or the role operator (or use a token made with `rota tokens create "
        f"--fire {shown(job)}`)",
    )


async def _grant(request: Request) -> tokens.Grant:
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
        return await ctx.db(tokens.grant, ctx.app.store, token)
    except tokens.TokenRefused as exc:
        raise Denied(401, "invalid_token", f"the API token was refused: {exc}") from None


async def _refuse(request: Request, principal: Principal, reason: str, message: str) -> NoReturn:
    """403, audited."""
    await audit_refusal(request, principal, reason)
    raise Denied(403, "forbidden", message)


async def audit_refusal(request: Request, principal: Principal, reason: str) -> None:
    """Record in the audit log that `principal` was refused this request, and why (the API's
    and the dashboard's refusals share it)."""
    ctx = context(request)
    # The path is the caller's: escaped and cut, so that what we audit can be stored.
    where = f"{request.method} {shown(request.url.path, 200)}"
    await ctx.db(
        lambda: ctx.app.store.audit(
            principal.name,
            AUTH_DENIED,
            actor_kind=principal.actor_kind,
            subject=where,
            detail={"reason": reason, "roles": sorted(principal.roles)},
        )
    )
