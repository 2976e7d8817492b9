"""Signing in and out: `/login` (paste an API token), `/login/once?code=...` (the one-time
link `rota serve` and `rota dev` print), and `POST /logout`.

The token is checked once, with the API's own token code (a `--fire` token, which may do
nothing but fire its job, is refused), and never stored: the browser gets a session cookie
(dashboard/sessions.py). The login form carries its own CSRF token, bound to a short-lived
cookie, so another site cannot sign a browser in as someone else.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...identity import tokens
from ..context import ApiContext, ApiError, context, shown
from ..params import Param, accepts, read_query, unprintable
from .guard import Form, Viewer, action, read_form
from .render import error_page, render, secured
from .sessions import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    close_session,
    open_session,
    redeem_login_code,
)

LOGIN_COOKIE = "rota_login"  # the login form's CSRF token (double submit)
SIGNED_IN = "session.opened"
SIGNED_OUT = "session.closed"


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/login", login_form, methods=["GET"], include_in_schema=False),
        Route("/login", login, methods=["POST"], include_in_schema=False),
        Route("/login/once", login_once, methods=["GET"], include_in_schema=False),
        Route("/logout", logout, methods=["POST"], include_in_schema=False),
    ]


def local_path() -> Param:
    """Where to go after signing in: a path on this server (never another site)."""

    def parse(raw: str) -> str:
        bad = not raw.startswith("/") or raw.startswith("//") or "\\" in raw
        if bad or len(raw) > 500 or unprintable(raw):
            raise ValueError(raw)
        return raw

    return Param(parse, "a path on this server starting with a single /, e.g. /runs", "/")


def login_code() -> Param:
    def parse(raw: str) -> str:
        if not 10 <= len(raw) <= 100 or not raw.replace("-", "").replace("_", "").isalnum():
            raise ValueError(raw)
        return raw

    return Param(parse, "the code of a login link that `rota serve` or `rota dev` printed")


@accepts(query={"next": local_path()})
async def login_form(request: Request) -> Response:
    """The sign-in form."""
    try:
        target = read_query(request)["next"]
    except ApiError as exc:
        return error_page(request, exc.status, "Bad request", exc.message)
    return _form(request, target)


def _form(request: Request, target: str, problem: str = "", status: int = 200) -> Response:
    nonce = random.token_urlsafe(24)
    page = render(request, "login.html", status=status, next=target, csrf=nonce, problem=problem)
    page.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return page


@accepts()
async def login(request: Request) -> Response:
    """Check the pasted token; on success, a session cookie and a redirect."""
    try:
        read_query(request)
        form = await read_form(request)
    except ApiError as exc:
        return error_page(request, exc.status, "Bad request", exc.message)
    target = form.get("next") or "/"
    try:
        target = local_path().parse(target)
    except ValueError:
        return error_page(request, 400, "Bad request", local_path().allowed)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    presented = form.get("csrf", "")
    if not expected or not presented or not random.compare_digest(expected, presented):
        return error_page(
            request,
            403,
            "Refused: the form's security token is missing or wrong",
            "Sign-in must come from this server's own /login form. Reload it and try again.",
        )
    token = form.get("token", "").strip()
    if not token:
        return _form(request, target, "Paste an API token (rota_...).", 400)
    ctx = context(request)
    try:
        grant = await ctx.db(tokens.grant, ctx.app.store, token)
    except tokens.TokenRefused as exc:
        return _form(request, target, f"That token was refused: {shown(str(exc), 200)}", 401)
    if grant.fire is not None:
        return _form(
            request, target, "That token may only fire one job; use a principal's own token.", 403
        )
    return await _signed_in(
        request, grant.principal.name, target, via="token", token_id=grant.token_id
    )


@accepts(query={"code": login_code()})
async def login_once(request: Request) -> Response:
    """Sign in with a one-time code; the code works once."""
    try:
        code = read_query(request)["code"]
    except ApiError as exc:
        return error_page(request, exc.status, "Bad request", exc.message)
    ctx = context(request)
    now = ctx.app.clock.now()
    name = None if code is None else await ctx.db(redeem_login_code, ctx.app.store, code, now)
    principal = None if name is None else await ctx.db(ctx.app.store.principal, name)
    if principal is None or principal.disabled:
        return error_page(
            request,
            403,
            "This login link does not work",
            "A login link works once, for 30 minutes. Restart `rota dev` (or `rota serve`) for "
            "a new one, or sign in with an API token at /login.",
        )
    return await _signed_in(request, principal.name, "/", via="link")


@action("")
async def logout(request: Request, viewer: Viewer, form: Form) -> Response:
    """End the session everywhere; back to the sign-in form."""
    ctx = context(request)
    sid = request.cookies.get(SESSION_COOKIE, "")
    await ctx.db(close_session, ctx.app.store, sid)
    await ctx.db(_audit, ctx, viewer.name, viewer.principal.actor_kind, SIGNED_OUT, {})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _signed_in(request: Request, name: str, target: str, **detail: Any) -> Response:
    ctx = context(request)
    store = ctx.app.store
    sid = await ctx.db(open_session, store, name, ctx.app.clock.now())
    principal = await ctx.db(store.principal, name)
    kind = principal.actor_kind if principal is not None else "human"
    await ctx.db(_audit, ctx, name, kind, SIGNED_IN, detail)
    response = secured(RedirectResponse(target, status_code=303))
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        max_age=int(SESSION_TTL_S),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _audit(ctx: ApiContext, name: str, kind: str, action_: str, detail: dict[str, Any]) -> None:
    ctx.app.store.audit(name, action_, actor_kind=kind, subject="dashboard", detail=detail)
