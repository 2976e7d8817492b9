"""A dashboard user through Starlette's TestClient: signed in with a fresh token, and the
CSRF token a page carries for its forms."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from rota import App
from rota.api import create_api
from rota.identity import admin, tokens

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token in the page's hidden form field."""
    found = CSRF_FIELD.search(page)
    assert found is not None, "the page has no csrf field"
    return found[1]


def signed_in(app: App, name: str) -> TestClient:
    """A client signed in through /login as principal `name` (token issued by root)."""
    token = tokens.issue(app.store, name, admin.Actor("root", "human")).token
    client = TestClient(create_api(app), follow_redirects=False)
    csrf = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"csrf": csrf, "token": token}).status_code == 303
    return client
