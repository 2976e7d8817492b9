"""Found by an outside check of the HTTP API: an operator could fire rota's own jobs with
`POST /api/jobs/rota:alert/runs`. Such a run takes a payload only rota makes, so it failed
and retried nine times. The route now refuses rota's own jobs (403) and enqueues nothing,
on SQLite and PostgreSQL, while the app's own jobs still fire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from rota import App
from rota.alerts import webhook
from rota.api import create_api
from rota.identity import admin, tokens
from rota.model import RunFilter


@pytest.fixture
def operator(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[App, TestClient, dict[str, str]]]:
    monkeypatch.setenv("OC_ALERTS_SECRET", "whsec_" + "QUJD" * 8)
    app = App(database_url)
    app.alerts(sinks=[webhook("http://127.0.0.1:9/alerts", secret="OC_ALERTS_SECRET")])
    app.principal("op", roles=["operator"])

    @app.job
    def report(ctx: Any, payload: Any) -> str:
        return "done"

    app.store.schema_version()  # opens the store: declared principals are synced
    token = tokens.issue(app.store, "op", admin.Actor("test", "human")).token
    try:
        with TestClient(create_api(app), raise_server_exceptions=False) as client:
            yield app, client, {"Authorization": f"Bearer {token}"}
    finally:
        app.close()


@pytest.mark.parametrize("name", ["rota:alert", "rota:approval-webhook"])
def test_rotas_own_jobs_cannot_be_fired(
    operator: tuple[App, TestClient, dict[str, str]], name: str
) -> None:
    app, client, headers = operator

    response = client.post(f"/api/jobs/{name}/runs", headers=headers, json={"payload": {}})

    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "forbidden"
    assert f"'{name}' is one of rota's own jobs" in body["message"]
    assert app.store.list_runs(RunFilter(names=(name,))) == []


def test_the_apps_own_job_still_fires(operator: tuple[App, TestClient, dict[str, str]]) -> None:
    _, client, headers = operator

    response = client.post("/api/jobs/report/runs", headers=headers, json={"payload": 1})

    assert response.status_code == 202, response.text
