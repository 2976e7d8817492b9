"""The dashboard's sessions, CSRF and roles, through Starlette's TestClient, on SQLite and
PostgreSQL: signing in with a token or a one-time code, what the cookie and the database
hold, CSRF on every POST, roles checked on the server at every request, and security headers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from rota import App, FakeClock
from rota.api import create_api
from rota.api.context import ApiContext
from rota.api.dashboard import sessions
from rota.api.dashboard.guard import Form, Viewer, action
from rota.api.factory import ROUTE_MODULES
from rota.identity import admin, tokens
from rota.storage.audit import AUTH_DENIED

START = 1_800_000_000.0


class Pokes:
    """A test route module: an operator action that counts what it was asked to do."""

    count = 0

    @staticmethod
    def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
        return [Route("/test/poke", poke, methods=["POST"], include_in_schema=False)]


@action("operator")
async def poke(request: Request, viewer: Viewer, form: Form) -> Response:
    Pokes.count += 1
    return PlainTextResponse(f"poked by {viewer.name}: {form.get('note', '')}")


@dataclass
class Dash:
    app: App
    clock: FakeClock
    client: TestClient
    tokens: dict[str, str]

    def sign_in(self, name: str) -> TestClient:
        """A fresh client signed in as `name` through the form."""
        client = TestClient(self.client.app, follow_redirects=False)
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = client.post(
            "/login", data={"csrf": csrf[1], "token": self.tokens[name], "next": "/audit"}
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/audit"
        return client


def csrf_of(client: TestClient) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/audit").text)
    assert found is not None
    return found[1]


@pytest.fixture
def dash(database_url: str) -> Iterator[Dash]:
    clock = FakeClock(START)
    app = App(database_url, clock=clock)
    app.principal("root", kind="user", roles=["admin"])
    app.principal("ops", kind="user", roles=["operator"])
    app.principal("watcher", kind="user", roles=["viewer"])

    @app.job
    def hello(ctx: Any, payload: Any) -> None:
        pass

    Pokes.count = 0
    made_by = admin.Actor("root", "human")
    issued = {n: tokens.issue(app.store, n, made_by).token for n in ("root", "ops", "watcher")}
    issued["fire"] = tokens.issue_fire(app.store, "hello", made_by).token
    try:
        api = create_api(app, modules=[*ROUTE_MODULES, Pokes])
        with TestClient(api, follow_redirects=False) as client:
            yield Dash(app, clock, client, issued)
    finally:
        app.close()


def test_signing_in_sets_a_strict_http_only_cookie_that_is_not_the_token(dash: Dash) -> None:
    client = dash.sign_in("watcher")
    cookie = next(c for c in client.cookies.jar if c.name == sessions.SESSION_COOKIE)
    assert cookie.value not in dash.tokens.values() and not cookie.value.startswith("rota_")
    assert cookie.path == "/" and cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    stored = dash.app.store.meta_prefixed("dashboard.")
    assert len(stored) == 1
    assert cookie.value not in str(stored)  # only its hash is kept
    page = client.get("/audit")
    assert page.status_code == 200
    assert "watcher" in page.text and "session.opened" in page.text
    for token in dash.tokens.values():
        assert token not in page.text


def test_every_dashboard_page_has_the_security_headers(dash: Dash) -> None:
    client = dash.sign_in("watcher")
    for path in ("/", "/audit", "/login", "/audit?since=nope"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in answer.text  # no inline script: the CSP would block it


def test_without_a_session_pages_redirect_to_the_login_form(dash: Dash) -> None:
    for path in ("/", "/audit?actor=root"):
        answer = dash.client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=%2F")
    # A bearer token is not a session: the dashboard reads only its cookie.
    bearer = {"Authorization": f"Bearer {dash.tokens['root']}"}
    assert dash.client.get("/", headers=bearer).status_code == 303
    forged = TestClient(dash.client.app, follow_redirects=False)
    forged.cookies.set(sessions.SESSION_COOKIE, "made-up")
    assert forged.get("/").status_code == 303


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "Paste an API token"),
        ("rota_" + "0" * 32 + "_" + "A" * 43, "That token was refused"),
        ("not a token", "That token was refused: malformed token"),
    ],
)
def test_a_refused_token_signs_no_one_in(dash: Dash, token: str, message: str) -> None:
    form = dash.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = dash.client.post("/login", data={"csrf": csrf[1], "token": token})
    assert answer.status_code in (400, 401)
    assert message in answer.text
    assert sessions.SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert dash.app.store.meta_prefixed("dashboard.session.") == {}


def test_a_fire_only_token_cannot_sign_in(dash: Dash) -> None:
    form = dash.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = dash.client.post("/login", data={"csrf": csrf[1], "token": dash.tokens["fire"]})
    assert answer.status_code == 403
    assert "may only fire one job" in answer.text
    assert dash.app.store.meta_prefixed("dashboard.session.") == {}


def test_the_login_form_needs_its_own_csrf_token(dash: Dash) -> None:
    dash.client.get("/login")  # the form's cookie is set, but the post does not echo it
    for data in ({"token": dash.tokens["root"]}, {"token": dash.tokens["root"], "csrf": "x"}):
        answer = dash.client.post("/login", data=data)
        assert answer.status_code == 403
        assert "security token is missing or wrong" in answer.text
    assert dash.app.store.meta_prefixed("dashboard.session.") == {}


def test_an_action_needs_the_session_csrf_token_then_the_role(dash: Dash) -> None:
    ops = dash.sign_in("ops")
    token = csrf_of(ops)
    for refused in ({}, {"csrf": "wrong"}):
        answer = ops.post("/test/poke", data={**refused, "note": "x"})
        assert answer.status_code == 403
        assert "CSRF token" in answer.text
    assert ops.post("/test/poke", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert Pokes.count == 0
    by_form = ops.post("/test/poke", data={"csrf": token, "note": "hi"})
    assert (by_form.status_code, by_form.text) == (200, "poked by ops: hi")
    by_header = ops.post("/test/poke", headers={"X-CSRF-Token": token})
    assert by_header.status_code == 200
    assert Pokes.count == 2
    # Another session's token does not do.
    other = dash.sign_in("root")
    assert other.post("/test/poke", data={"csrf": token}).status_code == 403
    assert Pokes.count == 2


def test_a_viewer_is_refused_an_operator_action_and_it_is_audited(dash: Dash) -> None:
    viewer = dash.sign_in("watcher")
    answer = viewer.post("/test/poke", data={"csrf": csrf_of(viewer)})
    assert answer.status_code == 403
    assert "lacks the role 'operator'" in html.unescape(answer.text)
    assert Pokes.count == 0
    [denied] = dash.app.store.audit_records(principal="watcher", action=AUTH_DENIED)
    assert denied.subject == "POST /test/poke"


def test_disabling_a_principal_or_taking_its_role_acts_at_once(dash: Dash) -> None:
    ops = dash.sign_in("ops")
    token = csrf_of(ops)
    assert ops.post("/test/poke", data={"csrf": token}).status_code == 200
    admin.regrant(
        dash.app.store, "ops", admin.Actor("root", "human"), roles=["operator"], add=False
    )
    assert ops.post("/test/poke", data={"csrf": token}).status_code == 403
    admin.set_disabled(dash.app.store, "ops", admin.Actor("root", "human"), True)
    assert ops.get("/audit").status_code == 303
    assert ops.post("/test/poke", data={"csrf": token}).status_code == 303
    assert Pokes.count == 1


def test_a_session_expires(dash: Dash) -> None:
    client = dash.sign_in("watcher")
    dash.clock.advance(sessions.SESSION_TTL_S - 1)
    assert client.get("/audit").status_code == 200
    dash.clock.advance(2)
    assert client.get("/audit").status_code == 303


def test_signing_out_ends_the_session_even_for_a_copied_cookie(dash: Dash) -> None:
    client = dash.sign_in("watcher")
    sid = client.cookies[sessions.SESSION_COOKIE]
    copy = TestClient(dash.client.app, follow_redirects=False)
    copy.cookies.set(sessions.SESSION_COOKIE, sid)
    assert copy.get("/audit").status_code == 200
    assert client.post("/logout").status_code == 403  # no CSRF token: refused, still signed in
    assert copy.get("/audit").status_code == 200
    out = client.post("/logout", data={"csrf": csrf_of(client)})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert copy.get("/audit").status_code == 303
    assert dash.app.store.meta_prefixed("dashboard.session.") == {}


def test_a_one_time_code_signs_in_once_and_expires(dash: Dash) -> None:
    store = dash.app.store
    code = sessions.mint_login_code(store, "root", dash.clock.now())
    first = dash.client.get(f"/login/once?code={code}")
    assert (first.status_code, first.headers["location"]) == (303, "/")
    again = TestClient(dash.client.app, follow_redirects=False).get(f"/login/once?code={code}")
    assert again.status_code == 403
    assert "works once" in again.text
    late = sessions.mint_login_code(store, "root", dash.clock.now())
    dash.clock.advance(sessions.LOGIN_CODE_TTL_S + 1)
    assert dash.client.get(f"/login/once?code={late}").status_code == 403
    # Expired codes are swept when the next one is made.
    sessions.mint_login_code(store, "root", dash.clock.now())
    assert len(store.meta_prefixed("dashboard.login.")) == 1


def test_the_startup_link_makes_a_dev_admin_only_when_asked(database_url: str) -> None:
    app = App(database_url, clock=FakeClock(START))
    try:
        store = app.store
        assert sessions.login_link(store, "http://h:1", START, make_dev_admin=False) is None
        link = sessions.login_link(store, "http://h:1/", START, make_dev_admin=True)
        assert link is not None
        url, name, made = link
        assert (name, made) == ("dev", True)
        assert url.startswith("http://h:1/login/once?code=")
        dev = store.principal("dev")
        assert dev is not None and dev.kind == "user" and "admin" in dev.roles
        again = sessions.login_link(store, "http://h:1", START, make_dev_admin=True)
        assert again is not None and again[1:] == ("dev", False)
    finally:
        app.close()
