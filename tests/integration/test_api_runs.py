"""Runs over HTTP on both databases: filtered keyset pages, a run with its agent trace
(model calls with messages, tokens and cost; tool calls with arguments, results and a
denial), cancel, retry, the replay report, and the refusals (401, 403, 404, 409, 400)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from rota import Agent, App, ToolContext, tool
from rota.api import create_api
from rota.identity import admin, tokens
from rota.testing import ScriptedModel, answer, call


@dataclass
class Api:
    app: App
    client: TestClient
    viewer: dict[str, str]
    operator: dict[str, str]


def bearer(app: App, principal: str) -> dict[str, str]:
    issued = tokens.issue(app.store, principal, admin.Actor("root", "human"))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    app = App(database_url)
    app.principal("watcher", roles=["viewer"])
    app.principal("ops", roles=["operator"])
    app.principal("svc-agent", kind="service", scopes=["crm:read"])

    @app.job
    def tick(ctx: Any, payload: Any) -> str:
        return "ok"

    @app.job(retries=0)
    def boom(ctx: Any, payload: Any) -> None:
        raise RuntimeError("disk 100% full_now")

    @tool(scopes=["crm:read"])
    def lookup(ctx: ToolContext, customer_id: str) -> str:
        """Look up a customer."""
        return f"plan of {customer_id}: gold"

    @tool(scopes=["crm:write"])
    def upgrade(ctx: ToolContext, customer_id: str) -> str:
        """Upgrade a customer."""
        return "upgraded"

    model = ScriptedModel(
        "trace",
        script=[
            call("lookup", customer_id="acme"),
            call("upgrade", customer_id="acme"),
            answer("done"),
        ],
    )
    app.agent(Agent("reviewer", model, "Review.", tools=[lookup, upgrade]), run_as="svc-agent")
    try:
        with TestClient(create_api(app)) as client:
            yield Api(app, client, bearer(app, "watcher"), bearer(app, "ops"))
    finally:
        app.close()


def test_list_filters_and_pages_newest_first(api: Api) -> None:
    ids = [api.app.run_now("tick", {"n": i}).id for i in range(5)]
    failed = api.app.run_now("boom", {}).id
    api.app.drain()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "2", "name": "tick", **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/api/runs", params=query, headers=api.viewer).json()
        seen += [r["id"] for r in page["items"]]
        assert all(r["url"] == f"/api/runs/{r['id']}" for r in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    by_state = api.client.get("/api/runs", params={"state": "FAILED"}, headers=api.viewer).json()
    assert [r["id"] for r in by_state["items"]] == [failed]
    # the error text is matched literally: % and _ are not wildcards
    for text, found in (("100% FULL_now", [failed]), ("100%_full", [])):
        got = api.client.get("/api/runs", params={"error": text}, headers=api.viewer).json()
        assert [r["id"] for r in got["items"]] == found, text
    later = api.client.get(
        "/api/runs", params={"since": "2999-01-01T00:00:00Z"}, headers=api.viewer
    ).json()
    assert later == {"items": [], "next_cursor": None}
    kinds = api.client.get("/api/runs", params={"kind": "agent"}, headers=api.viewer).json()
    assert kinds["items"] == []


def test_show_has_the_agent_trace(api: Api) -> None:
    run_id = api.app.run_now("reviewer", {"customer": "acme"}).id
    api.app.drain()
    shown = api.client.get(f"/api/runs/{run_id}", headers=api.viewer)
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert detail["state"] == "SUCCEEDED"
    assert [s["key"] for s in detail["steps"]][:2] == ["model#1", "tool:lookup"]
    (agent,) = detail["trace"]
    calls = agent["model_calls"]
    assert len(calls) == 3
    first = calls[0]
    assert first["messages"][0]["role"] == "user"
    assert first["usage"]["input_tokens"] > 0
    assert first["cost_usd"] is not None
    (looked_up,) = first["tool_calls"]
    assert looked_up["arguments"] == {"customer_id": "acme"}
    assert looked_up["result"] == "plan of acme: gold"
    assert looked_up["denied"] is False and looked_up["duration_s"] >= 0
    (refused,) = calls[1]["tool_calls"]
    assert refused["tool"] == "upgrade" and refused["denied"] is True
    assert "crm:write" in refused["result"]


def test_cancel_retry_and_conflicts(api: Api) -> None:
    queued = api.app.run_now("tick", {}).id
    assert api.client.post(f"/api/runs/{queued}/cancel", headers=api.viewer).status_code == 403
    cancelled = api.client.post(f"/api/runs/{queued}/cancel", headers=api.operator)
    assert cancelled.json()["state"] == "CANCELLED"
    again = api.client.post(f"/api/runs/{queued}/cancel", headers=api.operator)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    retried = api.client.post(f"/api/runs/{queued}/retry", headers=api.operator)
    assert retried.json()["state"] == "ENQUEUED"
    api.app.drain()
    assert api.app.get_run(queued).result == "ok"


def test_replay_report_and_its_refusals(api: Api) -> None:
    agent_run = api.app.run_now("reviewer", {"customer": "acme"}).id
    job_run = api.app.run_now("tick", {}).id
    api.app.drain()
    report = api.client.get(f"/api/runs/{agent_run}/replay", headers=api.operator)
    assert report.status_code == 200, report.text
    assert report.json()["identical"] is True and report.json()["provider_calls"] == 0
    refused = api.client.get(f"/api/runs/{job_run}/replay", headers=api.operator)
    assert refused.status_code == 409 and "only agent runs" in refused.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/runs/{id}"),
        ("POST", "/api/runs/{id}/cancel"),
        ("POST", "/api/runs/{id}/retry"),
        ("GET", "/api/runs/{id}/replay"),
    ],
)
def test_unknown_run_is_404_naming_it(api: Api, method: str, path: str) -> None:
    missing = "0190aaaa-0000-7000-8000-000000000000"
    answer_ = api.client.request(method, path.format(id=missing), headers=api.operator)
    assert answer_.status_code == 404
    assert answer_.json()["error"] == "not_found" and missing in answer_.json()["message"]
    nobody = api.client.request(method, path.format(id=missing))
    assert nobody.status_code == 401 and nobody.json()["error"] == "unauthenticated"


def test_bad_filters_are_400_naming_the_parameter(api: Api) -> None:
    for query, name in (
        ({"state": "DONE"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "../x"}, "cursor"),
        ({"sort": "id"}, "sort"),
    ):
        got = api.client.get("/api/runs", params=query, headers=api.viewer)
        assert got.status_code == 400, query
        assert got.json()["error"] == "bad_request" and name in got.json()["message"]


def test_trace_shows_a_tool_call_a_human_approved(database_url: str) -> None:
    app = App(database_url)
    app.principal("boss", roles=["admin"])

    @tool(requires_approval=True, approvers="finance")
    def refund(ctx: ToolContext, amount_cents: int) -> str:
        """Refund a customer."""
        return f"refunded {amount_cents}"

    model = ScriptedModel("gate", script=[call("refund", amount_cents=500), answer("done")])
    app.agent(Agent("refunder", model, "Refund.", tools=[refund]))
    try:
        run_id = app.run_now("refunder", {}).id
        app.drain()
        (request,) = app.store.approvals()
        with TestClient(create_api(app)) as client:
            boss = bearer(app, "boss")
            approved = client.post(f"/api/approvals/{request.id}/approve", headers=boss)
            assert approved.status_code == 200, approved.text
            app.drain()
            detail = client.get(f"/api/runs/{run_id}", headers=boss).json()
    finally:
        app.close()
    assert detail["state"] == "SUCCEEDED"
    (called,) = detail["trace"][0]["model_calls"][0]["tool_calls"]
    assert called["result"] == "refunded 500" and called["denied"] is False
    assert called["approval"]["status"] == "approved"
    assert called["approval"]["decided_by"] == "boss"
