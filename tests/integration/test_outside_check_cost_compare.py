"""Found by an outside check of the HTTP API: `POST /api/cost/compare` with two plans of one
name answered 500 (the ConfigError of `compare` escaped the route), on SQLite and
PostgreSQL. It is the caller's mistake: a 400 that names the plan, and the server goes on
answering."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from rota import App
from rota.api import create_api
from rota.identity import admin, tokens


@pytest.fixture
def viewer(database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = App(database_url)
    app.principal("view", roles=["viewer"])
    app.store.schema_version()  # opens the store: declared principals are synced
    token = tokens.issue(app.store, "view", admin.Actor("test", "human")).token
    try:
        with TestClient(create_api(app), raise_server_exceptions=False) as client:
            yield client, {"Authorization": f"Bearer {token}"}
    finally:
        app.close()


def test_two_plans_of_one_name_are_a_400_naming_it(
    viewer: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = viewer
    plans = [{"name": "api", "kind": "api"}, {"name": "api", "kind": "api"}]

    response = client.post("/api/cost/compare", headers=headers, json={"plans": plans})

    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "bad_request",
        "message": "the body: two plans are named 'api'; give each plan its own name",
    }
    distinct = [{"name": "api", "kind": "api"}, {"name": "api2", "kind": "api"}]
    again = client.post("/api/cost/compare", headers=headers, json={"plans": distinct})
    assert again.status_code == 200, again.text


def test_a_duplicate_name_with_control_characters_is_shown_escaped(
    viewer: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = viewer
    plans = [{"name": "a\nb", "kind": "api"}, {"name": "a\nb", "kind": "api"}]

    response = client.post("/api/cost/compare", headers=headers, json={"plans": plans})

    assert response.status_code == 400, response.text
    assert "two plans are named 'a\\nb'" in response.json()["message"]
