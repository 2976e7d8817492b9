"""A $ROTA_PRICES file that does not load is the server's fault, not the caller's: the cost
API and the dashboard's Costs page both answer 503 naming the setting (never a 5xx traceback),
and the server log says why, tagged with where it was read."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dashboard_client import signed_in
from starlette.testclient import TestClient

from rota import App
from rota.api import create_api
from rota.identity import admin, tokens

WINDOW = "since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z"


@pytest.fixture
def broken_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text("this is [not toml\n")
    monkeypatch.setenv("ROTA_PRICES", str(path))
    return path


@pytest.fixture
def viewer_app(app: App) -> App:
    app.principal("watcher", kind="user", roles=["viewer"])
    return app


def test_the_cost_api_answers_503_and_logs_why(
    viewer_app: App, broken_prices: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tokens.issue(viewer_app.store, "watcher", admin.Actor("root", "human")).token
    with (
        caplog.at_level(logging.WARNING, logger="rota.api"),
        TestClient(create_api(viewer_app)) as client,
    ):
        answer = client.get(
            f"/api/cost/report?{WINDOW}", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 503
    assert "$ROTA_PRICES" in answer.text
    assert any(r.getMessage().startswith("cost: the price overrides") for r in caplog.records)


def test_the_costs_page_answers_503_and_logs_why(
    viewer_app: App, broken_prices: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="rota.api"),
        signed_in(viewer_app, "watcher") as client,
    ):
        page = client.get("/costs")
    assert page.status_code == 503
    assert "$ROTA_PRICES" in page.text
    assert any(r.getMessage().startswith("costs page: the price overrides") for r in caplog.records)
