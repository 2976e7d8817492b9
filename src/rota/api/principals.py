"""Principals over HTTP (admin only), as `rota principals ...`, through rota.identity.admin
(which validates, stores and audits each change in one transaction; the actor is the
token's principal):

- `GET /api/principals`, `GET /api/principals/{name}`;
- `POST /api/principals` (add), `POST /api/principals/{name}/grant|revoke` (scopes, roles),
  `POST /api/principals/{name}/disable|enable`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import ConfigError
from ..identity import admin
from ..identity.principals import (
    Principal,
    UnknownPrincipal,
    check_roles,
    check_scopes,
    make_principal,
    principal_json,
)
from .answers import answer
from .auth import authorize
from .context import ApiContext, context, problem, shown
from .cursors import cursor, page, shaped
from .openapi import returns
from .params import BadRequest, accepts, path_name, read_body, read_query, unprintable, whole_number
from .schemas import Out

T = TypeVar("T")

MAX_GRANTS = 100  # scopes or roles in one request
MAX_GRANT_LEN = 200


class PrincipalOut(Out):
    name: str
    kind: str = pydantic.Field(description="user (a person) or service (a machine)")
    scopes: list[str]
    roles: list[str]
    disabled: bool


class PrincipalPage(Out):
    items: list[PrincipalOut]
    next_cursor: str | None


class PrincipalBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    kind: str = "service"
    scopes: list[str] = []
    roles: list[str] = []


class GrantBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    scopes: list[str] = []
    roles: list[str] = []


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/principals", list_principals, methods=["GET"]),
        Route("/api/principals", add, methods=["POST"]),
        Route("/api/principals/{name}", show, methods=["GET"]),
        Route("/api/principals/{name}/grant", grant, methods=["POST"]),
        Route("/api/principals/{name}/revoke", revoke, methods=["POST"]),
        Route("/api/principals/{name}/disable", disable, methods=["POST"]),
        Route("/api/principals/{name}/enable", enable, methods=["POST"]),
    ]


@returns(PrincipalPage)
@accepts(query={"limit": whole_number(1, 1000, default=100), "cursor": cursor()})
async def list_principals(request: Request) -> Response:
    """Principals by name, with their scopes and roles (admin)."""
    await authorize(request, "admin")
    query = read_query(request)
    after = shaped(query["cursor"], str)
    ctx = context(request)
    found = await ctx.db(lambda: ctx.app.store.principals())
    items, more = page(found, lambda p: (p.name,), after, query["limit"])
    body = {"items": [principal_json(p) for p in items], "next_cursor": more}
    return answer(PrincipalPage, body)


@returns(PrincipalOut)
@accepts()
async def show(request: Request) -> Response:
    """One principal (admin)."""
    await authorize(request, "admin")
    read_query(request)
    name = path_name(request, "name", "a principal's")
    ctx = context(request)
    found = await ctx.db(lambda: ctx.app.store.principal(name))
    if found is None:
        return _unknown(name)
    return answer(PrincipalOut, principal_json(found))


@returns(PrincipalOut, status=201, errors=(409,))
@accepts(body=PrincipalBody)
async def add(request: Request) -> Response:
    """Create a principal (admin)."""
    actor = admin.actor_of(await authorize(request, "admin"))
    read_query(request)
    body: PrincipalBody = await read_body(request)
    _check_text("name", [body.name])
    _check_text("kind", [body.kind])
    scopes, roles = _grants("scopes", body.scopes), _grants("roles", body.roles)
    wanted = _checked(lambda: make_principal(body.name, body.kind, scopes, roles))
    ctx = context(request)
    store = ctx.app.store

    def create() -> Principal | None:
        if store.principal(wanted.name) is not None:
            return None
        return admin.add(store, wanted, actor)

    created = await ctx.db(_refusing(create))
    if created is None:
        return problem(
            409,
            "conflict",
            f"principal '{wanted.name}' exists; change it with POST "
            f"/api/principals/{wanted.name}/grant or /revoke",
        )
    return answer(PrincipalOut, principal_json(created), status=201)


@returns(PrincipalOut)
@accepts(body=GrantBody)
async def grant(request: Request) -> Response:
    """Add scopes and roles to a principal (admin)."""
    return await _regrant(request, add=True)


@returns(PrincipalOut)
@accepts(body=GrantBody)
async def revoke(request: Request) -> Response:
    """Remove scopes and roles from a principal; running agents lose them at once (admin)."""
    return await _regrant(request, add=False)


async def _regrant(request: Request, *, add: bool) -> Response:
    actor = admin.actor_of(await authorize(request, "admin"))
    read_query(request)
    name = path_name(request, "name", "a principal's")
    body: GrantBody = await read_body(request)
    scopes, roles = _grants("scopes", body.scopes), _grants("roles", body.roles)
    if not scopes and not roles:
        verb = "grant" if add else "revoke"
        raise BadRequest(
            f'name at least one scope or role to {verb}: {{"scopes": ["billing:read"]}}'
        )
    _checked(lambda: (check_scopes(scopes), check_roles(roles)))
    ctx = context(request)
    store = ctx.app.store
    return await _changed(
        request, name, lambda: admin.regrant(store, name, actor, scopes, roles, add=add)
    )


@returns(PrincipalOut)
@accepts()
async def disable(request: Request) -> Response:
    """Refuse every run as this principal and every token of it, until enabled (admin)."""
    return await _set_disabled(request, True)


@returns(PrincipalOut)
@accepts()
async def enable(request: Request) -> Response:
    """Allow runs as this principal again (admin)."""
    return await _set_disabled(request, False)


async def _set_disabled(request: Request, disabled: bool) -> Response:
    actor = admin.actor_of(await authorize(request, "admin"))
    read_query(request)
    name = path_name(request, "name", "a principal's")
    store = context(request).app.store
    return await _changed(request, name, lambda: admin.set_disabled(store, name, actor, disabled))


# -- helpers -------------------------------------------------------------------------------


async def _changed(request: Request, name: str, change: Callable[[], Principal]) -> Response:
    try:
        changed = await context(request).db(_refusing(change))
    except UnknownPrincipal:
        return _unknown(name)
    return answer(PrincipalOut, principal_json(changed))


def _grants(field: str, values: list[str]) -> list[str]:
    if len(values) > MAX_GRANTS:
        raise BadRequest(f"{field} holds {len(values)} items; send at most {MAX_GRANTS}")
    _check_text(field, values)
    return values


def _check_text(field: str, values: list[str]) -> None:
    for value in values:
        if len(value) > MAX_GRANT_LEN or unprintable(value) is not None:
            raise BadRequest(
                f"{field} holds '{shown(value)}': send text of at most {MAX_GRANT_LEN} "
                "characters, without control characters"
            )


def _checked(make: Callable[[], T]) -> T:
    """`make()`, with rota's validation errors (ConfigError) as a 400 saying what to fix."""
    try:
        return make()
    except ConfigError as exc:
        raise BadRequest(shown(str(exc), 600)) from None


def _refusing(change: Callable[[], T]) -> Callable[[], T]:
    """`change` for ctx.db, with ConfigError (a refusal decided in the transaction) as 400."""

    def run() -> T:
        return _checked(change)

    return run


def _unknown(name: str) -> Response:
    return problem(
        404, "not_found", f"no principal named '{shown(name)}' (GET /api/principals lists them)"
    )
