"""`GET /api/audit` pages back through the whole log: the answer stays a list (its shape
since issue 5), and the `Link` header (rel="next") and `X-Next-Cursor` lead to older records,
on SQLite and PostgreSQL. A made-up cursor is a 400 naming it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from rota import App
from rota.api import create_api
from rota.identity import admin, tokens


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[App, TestClient, dict[str, str]]]:
    app = App(database_url)
    app.principal("auditor", kind="user", roles=["viewer"])
    app.store.schema_version()  # opens the store: declared principals are synced
    token = tokens.issue(app.store, "auditor", admin.Actor("test", "human")).token
    try:
        with TestClient(create_api(app), raise_server_exceptions=False) as client:
            yield app, client, {"Authorization": f"Bearer {token}"}
    finally:
        app.close()


def test_the_audit_list_pages_back_through_every_record(
    api: tuple[App, TestClient, dict[str, str]],
) -> None:
    app, client, headers = api
    for n in range(7):
        app.store.audit("bot", "test.paged", subject=f"s{n}")
    wanted = [r.seq for r in app.store.audit_records(action="test.paged", limit=100)]

    seen: list[int] = []
    url: str | None = "/api/audit?action=test.paged&limit=3"
    pages = 0
    while url is not None:
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json(), list)
        seen += [r["seq"] for r in answer.json()]
        pages += 1
        link = answer.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        if url is not None:
            assert "action=test.paged" in url and "limit=3" in url
            assert answer.headers["x-next-cursor"] in url
    assert pages == 3
    assert seen == wanted  # newest first, each once, none left out


@pytest.mark.parametrize("cursor", ["zzz", "WzEuNV0", "WyJhIl0", "WzFlMzBd", "Wy0xXQ"])
def test_a_made_up_audit_cursor_is_a_400(
    api: tuple[App, TestClient, dict[str, str]], cursor: str
) -> None:
    _, client, headers = api
    answer = client.get(f"/api/audit?cursor={cursor}", headers=headers)
    assert answer.status_code == 400, answer.text
    assert "cursor" in answer.json()["message"]
