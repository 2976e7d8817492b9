"""Who may see a dashboard page and who may act: `page(role)` and `action(role)`.

    @page("viewer")
    @accepts(query={"state": one_of(...)})
    async def runs(request: Request, viewer: Viewer) -> Response: ...

    @action("operator")
    async def cancel(request: Request, viewer: Viewer, form: Form) -> Response: ...

Both read the session cookie (dashboard/sessions.py) and the principal as it is stored now,
and check its role with the API's own `holds_role`. A page without a session redirects to
/login; an action (a POST) must also carry the session's CSRF token, as the form field `csrf`
or the `X-CSRF-Token` header (htmx sends it: base.html sets it in `hx-headers`), or it is
refused with 403. A refused role is a 403 page, audited as the API's are. A bad query string
or form (`BadRequest`, or any `ApiError` the page raises) is an HTML page with the API's
status and message, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...storage.principals import Principal
from ..auth import audit_refusal, holds_role
from ..context import ApiError, context, shown
from ..params import unprintable
from .render import error_page, secured
from .sessions import SESSION_COOKIE, Session, csrf_matches, resolve

MAX_FORM = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"

Form = dict[str, str]
PageEndpoint = Callable[[Request, "Viewer"], Awaitable[Response]]
ActionEndpoint = Callable[[Request, "Viewer", Form], Awaitable[Response]]


@dataclass(frozen=True)
class Viewer:
    """The signed-in principal of a request, and the CSRF token its forms carry."""

    principal: Principal
    csrf: str

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def role(self) -> str:
        """The highest of admin, operator, viewer this principal holds ("" for none)."""
        return next(
            (r for r in ("admin", "operator", "viewer") if holds_role(self.principal, r)), ""
        )

    def may(self, role: str) -> bool:
        """Whether to offer an action needing `role` (the server checks again on POST)."""
        return holds_role(self.principal, role)


def page(
    role: str = "viewer",
) -> Callable[[PageEndpoint], Callable[[Request], Awaitable[Response]]]:
    """A GET page for principals holding `role`; others are sent to /login or refused."""

    def wrap(endpoint: PageEndpoint) -> Callable[[Request], Awaitable[Response]]:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            session = await _session(request)
            if session is None:
                return _to_login(request)
            viewer = _admit(request, session)
            if not holds_role(session.principal, role):
                return await _refuse(request, session.principal, role)
            return await _answer(request, lambda: endpoint(request, viewer))

        return guarded

    return wrap


def action(role: str) -> Callable[[ActionEndpoint], Callable[[Request], Awaitable[Response]]]:
    """A POST for principals holding `role`, carrying the session's CSRF token."""

    def wrap(endpoint: ActionEndpoint) -> Callable[[Request], Awaitable[Response]]:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            session = await _session(request)
            if session is None:
                return _to_login(request)
            viewer = _admit(request, session)

            async def act() -> Response:
                form = await read_form(request)
                presented = request.headers.get("x-csrf-token") or form.pop("csrf", None)
                if not csrf_matches(session, presented):
                    return error_page(
                        request,
                        403,
                        "Refused: the form's security token is missing or wrong",
                        "This request did not carry this session's CSRF token, so it may not "
                        "have come from a dashboard page. Reload the page and try again.",
                    )
                if not holds_role(session.principal, role):
                    return await _refuse(request, session.principal, role)
                return await endpoint(request, viewer, form)

            return await _answer(request, act)

        return guarded

    return wrap


async def read_form(request: Request) -> Form:
    """A url-encoded form body, each field once, as text; BadRequest for anything else."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _capped(request)
    if not body:
        return {}
    if kind != FORM_TYPE:
        raise ApiError(415, "unsupported_media_type", f"send the form as {FORM_TYPE}")
    try:
        pairs = parse_qsl(body.decode("utf-8", errors="strict"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_request", "the form is not valid url-encoded UTF-8") from None
    form: Form = {}
    for name, value in pairs:
        if name in form:
            raise ApiError(400, "bad_request", f"form field {shown(name)} is given more than once")
        if unprintable(name) or unprintable(value, allow=frozenset("\t\n\r")):
            raise ApiError(
                400, "bad_request", f"form field {shown(name)} holds a control character"
            )
        form[name] = value
    return form


async def _capped(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise ApiError(413, "too_large", f"a dashboard form is at most {MAX_FORM // 1024} KiB")
    return body


async def holds_session(request: Request, role: str) -> bool:
    """Whether the request's session is still live and its principal holds `role`: asked
    again by a response that outlives its request (the live event stream)."""
    session = await _session(request)
    return session is not None and holds_role(session.principal, role)


async def _session(request: Request) -> Session | None:
    sid = request.cookies.get(SESSION_COOKIE, "")
    if not sid:
        return None
    ctx = context(request)
    return await ctx.db(resolve, ctx.app.store, sid, ctx.app.clock.now())


def _admit(request: Request, session: Session) -> Viewer:
    viewer = Viewer(session.principal, session.csrf)
    request.state.viewer = viewer  # render() shows who is signed in
    return viewer


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):  # htmx: reload the whole page onto the login form
        return secured(Response(status_code=204, headers={"HX-Redirect": "/login"}))
    return secured(RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303))


async def _answer(request: Request, respond: Callable[[], Awaitable[Response]]) -> Response:
    """The page's answer, secured; an ApiError it raised as an HTML page with its status."""
    try:
        return secured(await respond())
    except ApiError as exc:
        return error_page(request, exc.status, _TITLES.get(exc.status, "Refused"), exc.message)


_TITLES = {
    400: "Bad request",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
    415: "Unsupported form",
    422: "Cannot act on this",
}


async def _refuse(request: Request, principal: Principal, role: str) -> Response:
    """403, audited like the API's refusals."""
    await audit_refusal(request, principal, f"lacks role {role}")
    return error_page(
        request,
        403,
        "Not allowed",
        f"{principal.name} lacks the role {role!r} this needs; an admin can grant it with "
        f"`rota principals grant {principal.name} --role {role}`.",
    )
