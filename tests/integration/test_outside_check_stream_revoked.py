"""Found by an outside check of the HTTP API: `GET /api/stream`, opened with a token that was
then revoked, went on sending every run and approval change. The stream now checks its token
again (every `RECHECK_S`; here before every chunk) and ends once the token no longer
authenticates or its principal is disabled, on SQLite and PostgreSQL. The dashboard's `/live`
stream, which had the same gap, ends with its session."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from live_api import serving

from rota import App
from rota.api import stream
from rota.identity import admin, tokens

ROOT = admin.Actor("root", "human")


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setattr(stream, "POLL_S", 0.05)  # the test waits less; nothing depends on it
    monkeypatch.setattr(stream, "RECHECK_S", 0.0)  # check the token before every chunk
    app = App(database_url)
    app.principal("watcher", roles=["viewer"])

    @app.job
    def tick(ctx: Any, payload: Any) -> Any:
        return payload

    try:
        yield app
    finally:
        app.close()


def run_ids_until_the_stream_ends(
    url: str, token: str, app: App, take_away: Callable[[], None]
) -> list[str]:
    """Open the stream, see one run, `take_away` the caller's right to read, make another
    run; the ids of the runs the stream sent before it ended."""
    seen: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    # a generous read timeout: a stream that never ends fails the test, not hangs it
    with (
        httpx.Client(timeout=httpx.Timeout(30, read=20)) as client,
        client.stream("GET", f"{url}/api/stream", headers=headers) as answer,
    ):
        assert answer.status_code == 200
        lines = answer.iter_lines()
        assert next(lines) == ": rota stream"
        first = app.run_now("tick", {"n": 1})
        for line in lines:
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: "))["run"]["id"])
                if seen[-1] != first.id:
                    break  # the stream outlived the caller's right to read: fail now
                if len(seen) == 1:
                    take_away()
                    app.run_now("tick", {"n": 2})
    return seen


def test_a_revoked_token_ends_its_stream(app: App) -> None:
    issued = tokens.issue(app.store, "watcher", ROOT)

    with serving(app) as url:
        seen = run_ids_until_the_stream_ends(
            url, issued.token, app, lambda: tokens.revoke(app.store, issued.id, ROOT)
        )

    assert set(seen) == {seen[0]}  # the first run's events; nothing after the revocation


def test_a_disabled_principal_ends_its_stream(app: App) -> None:
    issued = tokens.issue(app.store, "watcher", ROOT)

    with serving(app) as url:
        seen = run_ids_until_the_stream_ends(
            url, issued.token, app, lambda: admin.set_disabled(app.store, "watcher", ROOT, True)
        )

    assert set(seen) == {seen[0]}


def test_a_dashboard_stream_ends_when_its_principal_is_disabled(app: App) -> None:
    issued = tokens.issue(app.store, "watcher", ROOT)

    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as browser:
        login = browser.get("/login").text
        csrf = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = browser.post("/login", data={"csrf": csrf, "token": issued.token})
        assert signed.status_code == 303, signed.text
        seen: list[str] = []
        with browser.stream("GET", "/live", timeout=httpx.Timeout(30, read=20)) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            assert next(lines) == ": rota stream"
            first = app.run_now("tick", {"n": 1})
            for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: "))["run"]["id"])
                    if seen[-1] != first.id:
                        break  # the stream outlived the session: fail now
                    if len(seen) == 1:
                        admin.set_disabled(app.store, "watcher", ROOT, True)
                        app.run_now("tick", {"n": 2})

    assert seen == [first.id]
