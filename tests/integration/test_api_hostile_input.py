"""The HTTP API never answers 5xx to bad input, on SQLite and PostgreSQL.

One test walks every route the app serves (read from the Starlette app, so a new route is
walked too) with hostile path and query values and JSON bodies, with and without a token; the
others pin the cases that once reached the database and failed there (500 on PostgreSQL), that
a refused request changes nothing, and that a database failure which is not the caller's fault
is a 503 with a one-line log.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from rota import App, on_webhook
from rota.api import create_api
from rota.api.params import declared
from rota.identity import admin, tokens
from rota.storage.audit import APPROVAL_GRANTED, APPROVAL_REJECTED

HUGE = str(10**30)
# Already percent-encoded where it matters: these go into the URL as they are.
HOSTILE = [
    "-1",
    "0",
    HUGE,
    "-" + HUGE,
    "1.5",
    "%00",
    "a%00b",
    "%ff%fe",
    "%ed%a0%80",  # an encoded lone surrogate
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f",
    "%0d%0aSet-Cookie:%20x=1",
    "x" * 4000,
    "%F0%9F%92%A9",
    "",
]
# Query names tried on every route besides those it declares ("%00" is never declared).
COMMON_QUERY = ["limit", "offset", "cursor", "status", "id", "%00"]
BODIES: list[bytes] = [
    b'{"comment',
    b"[1, 2]",
    b'"text"',
    b"123",
    b"null",
    b"true",
    b"\xff\xfe{}",
    b"[" * 100_000,
    b"9" * 5000,
    b'{"comment": 5}',
    b'{"comment": ["a"]}',
    b'{"comment": {"a": 1}}',
    b'{"comment": "a\\u0000b"}',
    b'{"comment": "\\ud800"}',
    b'{"comment": "' + b"x" * 4000 + b'"}',
    b'{"note": "x"}',
    b'{"\\u0000": 1}',
    b"{" + b'"k": 1, ' * 2000 + b'"z": 1}',
]
HOOK_SECRET = "whsec_" + "A" * 43 + "="
TRACEBACK = re.compile(r"Traceback|File \"|line \d+, in ")


@dataclass
class Api:
    app: App
    client: TestClient
    admin: dict[str, str]
    approval_id: str
    handle: Any
    database_url: str


@contextmanager
def serving(database_url: str) -> Iterator[Api]:
    """The app under test (a run waiting for an approval, two webhooks, an admin token)
    and a client of its API."""
    app = App(database_url)
    app.principal("root", roles=["admin"])

    @app.workflow
    async def refund(ctx: Any, payload: dict[str, Any]) -> Any:
        decision = await ctx.approval("Refund?", approvers="finance", timeout="1d")
        return decision.approved

    @app.job(trigger=on_webhook("open", scheme="none"))
    def opened(ctx: Any, payload: Any) -> None:
        pass

    @app.job(trigger=on_webhook("signed", secret_env="HOSTILE_HOOK_SECRET"))
    def signed(ctx: Any, payload: Any) -> None:
        pass

    handle = app.run_now("refund", {})
    app.drain()
    (request,) = app.store.approvals()
    issued = tokens.issue(app.store, "root", admin.Actor("root", "human"))
    bearer = {"Authorization": f"Bearer {issued.token}"}
    try:
        # Server errors come back as responses, so the walk can report every one of them.
        with TestClient(create_api(app), raise_server_exceptions=False) as client:
            yield Api(app, client, bearer, request.id, handle, database_url)
    finally:
        app.close()


@pytest.fixture(scope="module")
def api(module_database_url: str) -> Iterator[Api]:
    """One app per module and database for the tests that only read, or are refused: each
    still checks that its requests changed nothing (the approval is still pending)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOSTILE_HOOK_SECRET", HOOK_SECRET)
        with serving(module_database_url) as served:
            yield served


@pytest.fixture
def fresh_api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """An app of its own, for a test that changes it or counts what it recorded."""
    monkeypatch.setenv("HOSTILE_HOOK_SECRET", HOOK_SECRET)
    with serving(database_url) as served:
        yield served


def problems(response: Any, what: str) -> list[str]:
    """What is wrong with one answer to hostile input (nothing, for a good answer)."""
    found = []
    if response.status_code >= 500:
        found.append(f"{what}: {response.status_code} {response.text[:200]}")
    if response.status_code < 400 or response.request.method == "HEAD":
        return found
    text = response.text
    if response.headers.get("content-type", "").startswith("text/html"):
        # The dashboard's pages (api/dashboard) answer with an HTML page naming the problem.
        if TRACEBACK.search(text) or "x" * 300 in text:
            found.append(f"{what}: error page shows internals or echoes: {text[:200]}")
        return found
    if not response.headers.get("content-type", "").startswith("application/json"):
        found.append(f"{what}: error is not JSON: {text[:200]}")
        return found
    body = json.loads(text)
    if not (
        isinstance(body, dict)
        and isinstance(body.get("error"), str)
        and isinstance(body.get("message"), str)
        and set(body) <= {"error", "message", "state"}
    ):
        found.append(f"{what}: error body has not the error shape: {text[:200]}")
    if "pydantic" in text.lower() or TRACEBACK.search(text):
        found.append(f"{what}: error body shows internals: {text[:200]}")
    if len(text) > 2000:
        found.append(f"{what}: error body echoes too much ({len(text)} characters)")
    return found


def benign(api: Api, param: str) -> str:
    return {"id": api.approval_id, "name": "open"}.get(param, "x")


def url(route: Route, values: dict[str, str], query: str = "") -> str:
    path = route.path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path + (f"?{query}" if query else "")


def requests_for(
    api: Api, route: Route, turn: int
) -> Iterator[tuple[str, str, bytes | None, bool]]:
    """(method, url, body, hostile query?) of every hostile request we send to `route`.

    Every path parameter and every query parameter the route declares gets every hostile
    value: their parsers are what the values test. The cross product stops there, chosen
    the same way on every run:
    - a query name the route does not declare is refused by name, whatever its value, so
      each value is sent under one of those names, taking them in turn (`turn`, the route's
      place in the walk, shifts where the turn starts, so across the routes every name
      meets every value);
    - HEAD runs the GET endpoint, so it gets each value once, in one query name in turn,
      besides the hostile paths.
    """
    params = list(route.param_convertors)
    good = {p: benign(api, p) for p in params}
    query_names = list(dict.fromkeys(declared(route.endpoint).query))
    undeclared = [n for n in COMMON_QUERY if n not in query_names]
    for method in sorted(route.methods or ()):
        for i, value in enumerate(HOSTILE):
            for param in params:
                yield method, url(route, {**good, param: value}), None, False
            if method == "HEAD":
                names = [_in_turn([*query_names, *undeclared], turn + i)]
            else:
                names = [*query_names, _in_turn(undeclared, turn + i)]
            for name in names:
                yield method, url(route, good, f"{name}={value}"), None, True
        yield method, url(route, good, "limit=1&limit=2"), None, True
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            for body in BODIES:
                yield method, url(route, good), body, False


def _in_turn(names: list[str], turn: int) -> str:
    return names[turn % len(names)]


def test_every_route_answers_hostile_input_with_a_json_4xx(fresh_api: Api) -> None:
    routes = [r for r in fresh_api.client.app.routes if isinstance(r, Route)]
    assert {"/healthz", "/hooks/{name}", "/api/audit", "/api/approvals/{id}/approve"} <= {
        r.path for r in routes
    }
    found: list[str] = []
    sent = 0
    for turn, route in enumerate(routes):
        for method, target, body, query in requests_for(fresh_api, route, turn):
            # Anonymous callers get the hostile paths and bodies; the hostile query values,
            # which only the parameter parser sees (the admin's pass), are not sent twice.
            for headers in (fresh_api.admin, {}) if not query else (fresh_api.admin,):
                response = fresh_api.client.request(
                    method,
                    target,
                    content=body,
                    headers={**headers, "content-type": "application/json"},
                )
                who = "admin" if headers else "anonymous"
                found += problems(response, f"{who} {method} {target[:120]} {(body or b'')[:40]!r}")
                sent += 1
    assert sent > 1000
    assert found == []
    # Nothing hostile decided the request.
    assert fresh_api.app.store.approval(fresh_api.approval_id).status == "pending"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer " + "x" * 4000,
        "Bearer rota_" + "0" * 32 + "_" + "\x00" * 43,
        "Bearer rota_\x00",
        "Bearer ../../etc/passwd",
        "Basic cm9vdDpyb290",
        "Bearer",
        "\x00",
    ],
)
def test_a_hostile_authorization_header_is_a_401_on_every_api_route(
    api: Api, authorization: str
) -> None:
    routes = [r for r in api.client.app.routes if isinstance(r, Route)]
    found: list[str] = []
    for route in routes:
        if not route.path.startswith("/api/"):
            continue
        good = {p: benign(api, p) for p in route.param_convertors}
        for method in sorted(route.methods or ()):
            response = api.client.request(
                method, url(route, good), headers={"Authorization": authorization}
            )
            found += problems(response, f"{method} {route.path}")
            if response.status_code != 401:
                found.append(f"{method} {route.path}: {response.status_code}, not 401")
    assert found == []
    assert api.app.store.approval(api.approval_id).status == "pending"


# -- the cases that reached PostgreSQL ------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "param"),
    [
        ("/api/audit?limit=-1", "limit"),
        ("/api/audit?limit=0", "limit"),
        (f"/api/audit?limit={HUGE}", "limit"),
        (f"/api/audit?limit=-{HUGE}", "limit"),
        ("/api/approvals?status=all&limit=-1", "limit"),
        ("/api/audit?principal=%00", "principal"),
        ("/api/audit?action=%00", "action"),
        ("/api/audit?action=%ff%fe", "action"),
        ("/api/approvals?status=%00", "status"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(api: Api, target: str, param: str) -> None:
    response = api.client.get(target, headers=api.admin)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    message = response.json()["message"]
    assert f"query parameter {param} must be" in message
    assert "\x00" not in message


def test_limits_say_what_they_allow(api: Api) -> None:
    response = api.client.get("/api/audit?limit=5000", headers=api.admin)

    assert response.status_code == 400
    assert "limit must be a whole number from 1 to 1000; got '5000'" in response.json()["message"]


def test_an_unknown_or_repeated_query_parameter_is_refused(api: Api) -> None:
    typo = api.client.get("/api/audit?limt=5", headers=api.admin)
    twice = api.client.get("/api/audit?limit=5&limit=6", headers=api.admin)

    assert typo.status_code == 400
    assert "unknown query parameter 'limt'" in typo.json()["message"]
    assert "takes limit, principal, action" in typo.json()["message"]
    assert twice.status_code == 400
    assert "limit is given more than once" in twice.json()["message"]


def test_valid_filters_still_work(api: Api) -> None:
    response = api.client.get(
        "/api/audit?principal=root&action=token.*&limit=10", headers=api.admin
    )
    empty_filter = api.client.get("/api/audit?principal=&limit=1", headers=api.admin)

    assert response.status_code == 200, response.text
    assert [r["action"] for r in response.json()] == ["token.created"]
    assert empty_filter.status_code == 200 and len(empty_filter.json()) == 1


@pytest.mark.parametrize("verb", ["approve", "reject"])
@pytest.mark.parametrize("bad_id", ["%00", "a%00b", "%ff%fe", "x" * 4000, "..%2f"])
def test_a_malformed_approval_id_is_a_400_naming_it(api: Api, verb: str, bad_id: str) -> None:
    response = api.client.post(f"/api/approvals/{bad_id}/{verb}", headers=api.admin)

    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert "path parameter id must be an approval id" in response.json()["message"]
        assert len(response.json()["message"]) < 400
    assert api.app.store.approval(api.approval_id).status == "pending"


def test_a_nul_in_an_approval_id_is_a_400(api: Api) -> None:
    response = api.client.post("/api/approvals/%00/approve", headers=api.admin)

    assert response.status_code == 400, response.text
    assert "path parameter id must be an approval id" in response.json()["message"]
    assert "got '\\x00'" in response.json()["message"]


def test_an_unknown_well_formed_id_is_still_404(api: Api) -> None:
    response = api.client.post("/api/approvals/nope/approve", headers=api.admin)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"comment": 5}', "comment must be a string or null, not a number"),
        (b'{"comment": ["a"]}', "comment must be a string or null, not a list"),
        (b'{"note": "x"}', "the body has a field 'note' that it does not take"),
        (b"[1]", "the body must be a JSON object, not a list"),
        (b"null", "the body must be a JSON object, not null"),
        (b'{"comment', "the body is not valid JSON (Unterminated string"),
        (b"\xff\xfe{}", "the body is not UTF-8 text (byte 0)"),
        (b'{"comment": "\xed\xa0\x80"}', "the body is not UTF-8 text (byte 13)"),
        (b"[" * 50_000, "the body is JSON that rota does not read"),
        (b"9" * 5000, "the body is JSON that rota does not read"),
        (b'{"comment": "a\\u0000b"}', "comment holds the character '\\x00'"),
        (b'{"comment": "\\ud800"}', "comment holds the character '\\ud800'"),
        (b'{"comment": "' + b"x" * 2001 + b'"}', "keep it under 2000"),
    ],
)
def test_a_malformed_decision_body_is_refused_and_decides_nothing(
    api: Api, body: bytes, fragment: str
) -> None:
    response = api.client.post(
        f"/api/approvals/{api.approval_id}/approve",
        content=body,
        headers={**api.admin, "content-type": "application/json"},
    )

    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert fragment in message
    assert "pydantic" not in response.text and "validation error" not in message
    assert "comment" in message  # the field, or the shape the body must have
    assert api.app.store.approval(api.approval_id).status == "pending"
    decisions = api.app.store.audit_records(action="approval.*", limit=10)
    assert not [r for r in decisions if r.action in (APPROVAL_GRANTED, APPROVAL_REJECTED)]
    assert api.handle.state == "WAITING"


def test_a_valid_decision_with_a_multiline_comment_still_decides(fresh_api: Api) -> None:
    response = fresh_api.client.post(
        f"/api/approvals/{fresh_api.approval_id}/reject",
        json={"comment": "no:\n\tover budget"},
        headers=fresh_api.admin,
    )

    assert response.status_code == 200, response.text
    assert response.json()["comment"] == "no:\n\tover budget"
    assert fresh_api.app.store.approval(fresh_api.approval_id).status == "rejected"


def test_an_oversized_decision_body_is_a_413(api: Api) -> None:
    response = api.client.post(
        f"/api/approvals/{api.approval_id}/approve",
        content=b" " * (64 * 1024 + 1),
        headers=api.admin,
    )

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert api.app.store.approval(api.approval_id).status == "pending"


# -- webhooks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("%00", "\\x00"),
        ("a%00b", "a\\x00b"),
        ("%ff%fe", "\ufffd\ufffd"),
        ("x" * 4000, "x" * 200 + "..."),
        ("%2e%2e", ".."),
    ],
)
def test_a_hostile_hook_name_is_a_404_and_recorded(
    fresh_api: Api, name: str, recorded: str
) -> None:
    response = fresh_api.client.post(f"/hooks/{name}", content=b"{}")

    assert response.status_code == 404, response.text
    assert response.json()["error"] == "unknown_hook"
    assert len(response.json()["message"]) < 300
    [rejection] = fresh_api.app.store.rejections()
    assert (rejection.hook, rejection.status, rejection.reason) == (recorded, 404, "unknown_hook")
    assert fresh_api.app.store.events() == []


@pytest.mark.parametrize("hook", ["open", "signed", "nope"])
def test_a_control_character_in_a_header_is_a_400_and_recorded(fresh_api: Api, hook: str) -> None:
    response = fresh_api.client.post(
        f"/hooks/{hook}", content=b'{"a": 1}', headers={"webhook-id": "msg\x00one"}
    )

    expected = 404 if hook == "nope" else 400
    assert response.status_code == expected, response.text
    if hook != "nope":
        assert response.json()["error"] == "invalid_header"
        assert "header 'webhook-id' holds a control character" in response.json()["message"]
    [rejection] = fresh_api.app.store.rejections()
    assert rejection.delivery_id == "msg\\x00one"
    assert fresh_api.app.store.events() == []


@pytest.mark.parametrize(
    ("length", "status", "reason"),
    [
        ("\xb2".encode("latin-1"), 400, "invalid_header"),  # "²": str.isdigit() says yes
        (b"-1", 400, "invalid_header"),
        (b"1e3", 400, "invalid_header"),
        (b"9" * 5000, 413, "too_large"),  # past what int() reads
        (b"3000000000", 413, "too_large"),  # past what the record's 32-bit size holds
    ],
)
def test_a_malformed_content_length_is_a_4xx(
    fresh_api: Api, length: bytes, status: int, reason: str
) -> None:
    response = fresh_api.client.post(
        "/hooks/open", content=b"{}", headers={"content-length": length}
    )

    assert response.status_code == status, response.text
    assert response.json()["error"] == reason
    assert len(response.json()["message"]) < 300
    [rejection] = fresh_api.app.store.rejections()
    assert rejection.reason == reason


def test_an_odd_but_valid_delivery_is_still_accepted(fresh_api: Api) -> None:
    body = b'{"text": "a\\u0000b \\ud800", "n": 100000000000000000000000000000}'
    # Bytes past 0x7f are legal in a header (Starlette reads them as Latin-1): UTF-8 "€"
    # arrives as "\xe2\x82\xac", and 0x82 is a C1 control character that is still fine.
    raw = "msg-\u20ac".encode()
    response = fresh_api.client.post("/hooks/open", content=body, headers={"webhook-id": raw})

    assert response.status_code == 202, response.text
    [event] = fresh_api.app.store.events()
    assert event.idempotency_key == raw.decode("latin-1")


# -- the database fails, not the caller ------------------------------------------------------


def _driver_error(database_url: str) -> Exception:
    if database_url.startswith("postgresql"):
        return psycopg.OperationalError("server closed the connection unexpectedly\nline two")
    return sqlite3.OperationalError("database is locked\nline two")


@pytest.mark.parametrize(
    ("method", "target", "store_method"),
    [
        ("GET", "/api/audit", "audit_records"),
        ("GET", "/api/approvals?status=all", "approvals"),
        ("POST", "/api/approvals/{id}/approve", "decide_approval"),
        ("GET", "/api/whoami", "principal"),
    ],
)
def test_a_database_failure_is_a_503_with_one_log_line(
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    target: str,
    store_method: str,
) -> None:
    error = _driver_error(api.database_url)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(api.app.store, store_method, fail)
    with caplog.at_level(logging.INFO, logger="rota"):
        response = api.client.request(method, target.format(id=api.approval_id), headers=api.admin)

    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": "database_unavailable",
        "message": "the database did not answer; try again later (the server log says why)",
    }
    assert response.headers["retry-after"] == "5"
    logged = [r for r in caplog.records if r.name.startswith("rota.api")]
    assert len(logged) == 1
    (line,) = logged
    assert line.exc_info is None and "\n" not in line.getMessage()
    assert f"{type(error).__name__}: " in line.getMessage()
    assert target.split("?")[0].format(id=api.approval_id) in line.getMessage()
    assert api.app.store.approval(api.approval_id).status == "pending"


def test_a_bug_is_a_json_500_without_a_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("oops")

    monkeypatch.setattr(api.app.store, "audit_records", bug)
    response = api.client.get("/api/audit", headers=api.admin)

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "the request failed; the server log says why",
    }
