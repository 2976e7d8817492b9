"""API tokens over HTTP (admin only), as `rota tokens ...`, through rota.identity.tokens:

- `GET /api/tokens`: ids and state, never a token (rota keeps only hashes);
- `POST /api/tokens`: make one; the answer holds the token, the only time it is shown. It is
  never logged, and a refused request does not echo it;
- `POST /api/tokens/{id}/revoke`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..clock import iso
from ..durations import seconds
from ..errors import ConfigError
from ..identity import admin, tokens
from ..identity.principals import UnknownPrincipal
from .answers import answer
from .auth import authorize
from .context import ApiContext, context, problem, shown
from .cursors import cursor, page, shaped
from .openapi import returns
from .params import (
    BadRequest,
    accepts,
    path_id,
    read_body,
    read_query,
    text_filter,
    unprintable,
    whole_number,
)
from .schemas import Out

MAX_LIFETIME_S = tokens.MAX_LIFETIME_S


class TokenOut(Out):
    id: str
    principal: str
    created: str | None
    expires: str | None
    revoked: str | None
    fire: str | None = pydantic.Field(
        None, description="The one job this token may fire (rota tokens create --fire)"
    )


class TokenPage(Out):
    items: list[TokenOut]
    next_cursor: str | None


class TokenCreated(Out):
    id: str
    principal: str
    token: str = pydantic.Field(description="Shown only in this answer; store it now")
    expires: str | None
    fire: str | None
    message: str


class TokenBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    principal: str | None = None  # with fire: default fire-NAME
    expires: str | None = None  # a lifetime: 30d, 12h; none for no expiry
    fire: str | None = None  # the one job, workflow or agent the token may fire


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/tokens", list_tokens, methods=["GET"]),
        Route("/api/tokens", create, methods=["POST"]),
        Route("/api/tokens/{id}/revoke", revoke, methods=["POST"]),
    ]


@returns(TokenPage)
@accepts(
    query={
        "principal": text_filter(),
        "limit": whole_number(1, 1000, default=100),
        "cursor": cursor(),
    }
)
async def list_tokens(request: Request) -> Response:
    """API tokens, oldest first: ids and state, never the tokens (admin)."""
    await authorize(request, "admin")
    query = read_query(request)
    after = shaped(query["cursor"], float, str)
    ctx = context(request)
    found = await ctx.db(lambda: ctx.app.store.tokens(query["principal"]))
    items, more = page(found, lambda t: (t.created_at, t.id), after, query["limit"])
    body = {"items": [tokens.token_json(t) for t in items], "next_cursor": more}
    return answer(TokenPage, body)


@returns(TokenCreated, status=201, errors=(404,))
@accepts(body=TokenBody)
async def create(request: Request) -> Response:
    """Make an API token for a principal; the answer shows it, once (admin)."""
    actor = admin.actor_of(await authorize(request, "admin"))
    read_query(request)
    body: TokenBody = await read_body(request)
    if body.principal is None and body.fire is None:
        raise BadRequest('name the principal the token stands for: {"principal": "svc-ci"}')
    name = _name("principal", body.principal)
    fire = _name("fire", body.fire)
    lifetime = _lifetime(body.expires)
    ctx = context(request)
    if fire is not None and fire not in ctx.app.definitions:
        return problem(404, "not_found", f"no job, workflow or agent named '{shown(fire)}'")
    store = ctx.app.store

    def make() -> tokens.IssuedToken:
        if fire is not None:
            return tokens.issue_fire(store, fire, actor, principal=name, expires_in_s=lifetime)
        assert name is not None
        return tokens.issue(store, name, actor, expires_in_s=lifetime)

    try:
        issued = await ctx.db(make)
    except UnknownPrincipal:
        return problem(
            404,
            "not_found",
            f"no principal named '{shown(name or '')}' (GET /api/principals lists them)",
        )
    except ConfigError as exc:  # a job name that makes no principal name (fire-NAME)
        raise BadRequest(shown(str(exc), 400)) from None
    until = f"until {iso(issued.expires_at)}" if issued.expires_at else "with no expiry"
    only = f", only to fire {fire}" if fire else ""
    out = {
        "id": issued.id,
        "principal": issued.principal,
        "token": issued.token,
        "expires": iso(issued.expires_at),
        "fire": fire,
        "message": f"token {issued.id} for {issued.principal}{only}, valid {until}; it is "
        "shown only now: store it somewhere safe",
    }
    return answer(TokenCreated, out, status=201)


@returns(TokenOut, errors=(409,))
@accepts()
async def revoke(request: Request) -> Response:
    """Revoke an API token at once (admin)."""
    actor = admin.actor_of(await authorize(request, "admin"))
    read_query(request)
    token_id = path_id(request, "id", "a token")
    ctx = context(request)
    store = ctx.app.store

    def run() -> str | None:
        if store.token(token_id) is None:
            return "unknown"
        try:
            tokens.revoke(store, token_id, actor)
        except tokens.TokenRefused:
            return "revoked"
        return None

    refused = await ctx.db(run)
    if refused == "unknown":
        return problem(
            404, "not_found", f"no token with id '{token_id}' (GET /api/tokens lists them)"
        )
    if refused == "revoked":
        return problem(409, "conflict", f"token {token_id} was already revoked")
    record = await ctx.db(lambda: store.token(token_id))
    assert record is not None
    return answer(TokenOut, tokens.token_json(record))


def _name(field: str, value: str | None) -> str | None:
    if value is not None and (not value or len(value) > 200 or unprintable(value) is not None):
        raise BadRequest(
            f"{field} must be a name of at most 200 characters, without control characters; "
            f"got '{shown(value)}'"
        )
    return value


def _lifetime(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        if len(text) > 40:
            raise ConfigError("too long")
        lifetime = seconds(text, what="expires")
    except ConfigError:
        raise BadRequest(
            f"expires must be a lifetime such as 30d, 12h or 1h30m; got '{shown(text)}'"
        ) from None
    if not 0 < lifetime <= MAX_LIFETIME_S:
        raise BadRequest(f"expires must be more than 0s and at most 3650d; got '{shown(text)}'")
    return lifetime
