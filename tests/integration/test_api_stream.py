"""`GET /api/stream` on a live server, on both databases: run and approval changes arrive as
server-sent events, and a client that reconnects with `Last-Event-ID` gets exactly the
events after that one, in the same order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_api import serving

from rota import App
from rota.api import stream
from rota.identity import admin, tokens


def events(
    url: str, headers: dict[str, str], count: int, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The first `count` events the stream sends (id, event, data), then hang up."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with (
        httpx.Client(timeout=60) as client,
        client.stream("GET", f"{url}/api/stream", headers=headers, params=params) as answer,
    ):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    found.append(current)
                    current = {}
                    if len(found) == count:
                        return found
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return found


def what(event: dict[str, Any]) -> tuple[str, str, str]:
    """What changed, and which run or approval (a running run's duration is not stable)."""
    data = event["data"]
    record = data.get("run") or data["approval"]
    return event["event"], data["change"], record["id"]


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setattr(stream, "POLL_S", 0.05)  # the test waits less; nothing depends on it
    app = App(database_url)
    app.principal("watcher", roles=["viewer"])

    @app.job
    def tick(ctx: Any, payload: Any) -> Any:
        return payload

    @app.workflow
    async def refund(ctx: Any, payload: Any) -> Any:
        return (await ctx.approval("Refund?", approvers="finance", timeout="1d")).approved

    try:
        yield app
    finally:
        app.close()


def test_stream_sends_changes_and_resumes_after_last_event_id(app: App) -> None:
    token = tokens.issue(app.store, "watcher", admin.Actor("root", "human")).token
    auth = {"Authorization": f"Bearer {token}"}
    first = app.run_now("tick", {"n": 1})
    app.run_now("refund", {})
    app.drain()
    with serving(app) as url:
        # Resume from before everything: the ids of the first event this stream sends
        assert events(url, auth, 1, {"last_event_id": "0" * 19 + ".run.created.x"})
        seen = events(url, auth, 6, {"last_event_id": "0" * 19 + ".run.created.x"})
        ids = [e["id"] for e in seen]
        assert ids == sorted(ids) and len(set(ids)) == 6
        kinds = [(e["event"], e["data"]["change"]) for e in seen]
        assert ("run", "finished") in kinds and ("approval", "requested") in kinds
        finished = next(
            e
            for e in seen
            if e["data"].get("run", {}).get("id") == first.id and e["data"]["change"] == "finished"
        )
        assert finished["data"]["run"]["state"] == "SUCCEEDED"

        resumed = events(url, {**auth, "Last-Event-ID": ids[2]}, 3)
        assert [e["id"] for e in resumed] == ids[3:6]
        assert [what(e) for e in resumed] == [what(e) for e in seen[3:6]]

        # a change made while nobody listens arrives after the last id seen
        later = app.run_now("tick", {"n": 2})
        after = events(url, {**auth, "Last-Event-ID": ids[-1]}, 1)
        assert after[0]["data"]["run"]["id"] == later.id
        assert after[0]["data"]["change"] == "created"

        # both given: the header (a reconnect's newest position) wins over the query
        both = events(url, {**auth, "Last-Event-ID": ids[4]}, 1, {"last_event_id": ids[0]})
        assert both[0]["id"] == ids[5]


def test_stream_refusals(app: App) -> None:
    token = tokens.issue(app.store, "watcher", admin.Actor("root", "human")).token
    with serving(app) as url, httpx.Client(timeout=30) as client:
        assert client.get(f"{url}/api/stream").status_code == 401
        bad = client.get(
            f"{url}/api/stream",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "yesterday"},
        )
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["message"]
        assert token not in bad.text
