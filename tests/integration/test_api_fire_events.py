"""Firing jobs and emitting events over HTTP, on both databases: a token made with
`--fire NAME` fires that job and is refused (403) for any other job and for every other route;
a `fire:NAME` scope and the operator role also fire; idempotency keys; events emitted, listed
in keyset pages and replayed; and the CLI verbs (`rota tokens create --fire`, `rota events
emit`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from rota import App, on_event
from rota.api import create_api
from rota.cli import app as cli
from rota.identity import admin, tokens
from rota.storage.audit import AUTH_DENIED, RUN_REQUESTED

ROOT = admin.Actor("root", "human")


@dataclass
class Api:
    app: App
    client: TestClient


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def define(app: App) -> None:
    app.principal("ops", roles=["operator"])
    app.principal("svc-ci", kind="service", scopes=["fire:nightly"])
    app.principal("watcher", roles=["viewer"])

    @app.job
    def nightly(ctx: Any, payload: Any) -> Any:
        return payload

    @app.job
    def payroll(ctx: Any, payload: Any) -> Any:
        return "paid"

    @app.job(trigger=on_event("invoice.paid"))
    def book(ctx: Any, event: Any) -> Any:
        return event


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    app = App(database_url)
    define(app)
    try:
        with TestClient(create_api(app)) as client:
            yield Api(app, client)
    finally:
        app.close()


def test_a_fire_token_fires_its_job_and_nothing_else(api: Api) -> None:
    issued = tokens.issue_fire(api.app.store, "nightly", ROOT)
    assert issued.principal == "fire-nightly" and issued.fire == "nightly"
    token = bearer(issued.token)
    fired = api.client.post(
        "/api/jobs/nightly/runs", json={"payload": {"n": 1}, "idempotency_key": "k1"}, headers=token
    )
    assert fired.status_code == 202, fired.text
    run_id = fired.json()["run_id"]
    assert fired.json()["url"] == f"/api/runs/{run_id}" and fired.json()["created"] is True
    again = api.client.post(
        "/api/jobs/nightly/runs", json={"payload": {"n": 2}, "idempotency_key": "k1"}, headers=token
    )
    assert again.status_code == 200 and again.json()["run_id"] == run_id
    assert again.json()["created"] is False
    api.app.drain()
    run = api.app.get_run(run_id)
    assert run.result == {"n": 1} and run.trigger == "api"

    other = api.client.post("/api/jobs/payroll/runs", json={}, headers=token)
    assert other.status_code == 403 and other.json()["error"] == "forbidden"
    assert "nightly" in other.json()["message"]
    assert issued.token not in other.text
    # every other route refuses it too, whatever it would need
    for method, path in walk(api):
        if path == "/api/jobs/{name}/runs" or not path.startswith("/api/"):
            continue
        answer = api.client.request(method, path.replace("{", "x").replace("}", ""), headers=token)
        assert answer.status_code in (400, 403), (method, path, answer.status_code)
    requested = api.app.store.audit_records(action=RUN_REQUESTED)
    assert [(r.actor, r.run_id) for r in requested] == [("fire-nightly", run_id)]
    denied = api.app.store.audit_records(action=AUTH_DENIED, principal="fire-nightly")
    assert any(r.subject == "POST /api/jobs/payroll/runs" for r in denied)


def test_a_fire_token_of_an_operator_is_still_only_for_its_job(api: Api) -> None:
    issued = tokens.issue_fire(api.app.store, "nightly", ROOT, principal="ops")
    token = bearer(issued.token)
    assert api.client.post("/api/jobs/nightly/runs", headers=token).status_code == 202
    # ops may fire anything and read runs with its other tokens; not with this one
    assert api.client.post("/api/jobs/payroll/runs", headers=token).status_code == 403
    listed = api.client.get("/api/runs", headers=token)
    assert listed.status_code == 403 and "may only fire 'nightly'" in listed.json()["message"]
    assert api.client.get("/api/whoami", headers=token).status_code == 403
    other = bearer(tokens.issue(api.app.store, "ops", ROOT).token)
    assert api.client.get("/api/runs", headers=other).status_code == 200


def walk(api: Api) -> list[tuple[str, str]]:
    found = []
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def test_scope_and_role_fire_and_others_are_refused(api: Api) -> None:
    store = api.app.store
    ci = bearer(tokens.issue(store, "svc-ci", ROOT).token)
    ops = bearer(tokens.issue(store, "ops", ROOT).token)
    watcher = bearer(tokens.issue(store, "watcher", ROOT).token)
    assert api.client.post("/api/jobs/nightly/runs", headers=ci).status_code == 202
    refused = api.client.post("/api/jobs/payroll/runs", headers=ci)
    assert refused.status_code == 403 and "fire:payroll" in refused.json()["message"]
    assert api.client.post("/api/jobs/payroll/runs", headers=ops).status_code == 202
    assert api.client.post("/api/jobs/payroll/runs", headers=watcher).status_code == 403
    assert api.client.post("/api/jobs/payroll/runs").status_code == 401
    missing = api.client.post("/api/jobs/nope/runs", headers=ops)
    assert missing.status_code == 404 and "'nope'" in missing.json()["message"]
    bad = api.client.post("/api/jobs/nightly/runs", json={"idempotency_key": 7}, headers=ops)
    assert bad.status_code == 400 and "idempotency_key" in bad.json()["message"]
    nan = api.client.post(
        "/api/jobs/nightly/runs",
        content=b'{"payload": NaN}',
        headers={**ops, "content-type": "application/json"},
    )
    assert nan.status_code == 400 and nan.json()["error"] == "bad_request"
    big = api.client.post("/api/jobs/nightly/runs", json={"payload": "x" * 70_000}, headers=ops)
    assert big.status_code == 413 and big.json()["error"] == "too_large"


def test_events_emit_list_page_and_replay(api: Api) -> None:
    ops = bearer(tokens.issue(api.app.store, "ops", ROOT).token)
    watcher = bearer(tokens.issue(api.app.store, "watcher", ROOT).token)
    emitted = api.client.post(
        "/api/events/invoice.paid",
        json={"payload": {"id": 7}, "idempotency_key": "evt_7"},
        headers=ops,
    )
    assert emitted.status_code == 202, emitted.text
    (run,) = emitted.json()["runs"]
    assert run["name"] == "book"
    duplicate = api.client.post(
        "/api/events/invoice.paid",
        json={"payload": {"id": 7}, "idempotency_key": "evt_7"},
        headers=ops,
    )
    assert duplicate.status_code == 200 and duplicate.json()["runs"] == []
    assert api.client.post("/api/events/x", headers=watcher).status_code == 403
    for i in range(3):
        api.client.post("/api/events/other", json={"payload": i}, headers=ops)
    first = api.client.get("/api/events", params={"limit": 2}, headers=watcher).json()
    second = api.client.get(
        "/api/events", params={"limit": 2, "cursor": first["next_cursor"]}, headers=watcher
    ).json()
    assert [e["payload"] for e in first["items"]] == [2, 1]
    assert [e["payload"] for e in second["items"]] == [0, {"id": 7}]
    assert second["next_cursor"] is None
    event_id = emitted.json()["event_id"]
    replayed = api.client.post(f"/api/events/{event_id}/replay", headers=ops)
    assert replayed.status_code == 202 and replayed.json()["runs"][0]["name"] == "book"
    api.app.drain()
    assert api.app.get_run(replayed.json()["runs"][0]["id"]).result == {"id": 7}
    unknown = api.client.post("/api/events/0190aaaa-0000/replay", headers=ops)
    assert unknown.status_code == 404 and "0190aaaa-0000" in unknown.json()["message"]


APP_FILE = """
from rota import App, on_event
app = App({url!r})
app.principal("ops", roles=["operator"])

@app.job(trigger=on_event("invoice.paid"))
def book(ctx, event):
    return event

@app.job
def nightly(ctx, payload):
    return payload
"""


def test_cli_fire_token_and_events_emit(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"fireapp_{uuid.uuid4().hex[:8]}"  # not the module an earlier test imported
    (tmp_path / f"{module}.py").write_text(APP_FILE.format(url=database_url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    migrated = runner.invoke(cli, ["--app", f"{module}:app", "db", "migrate"])
    assert migrated.exit_code == 0, migrated.output
    made = runner.invoke(cli, ["--app", f"{module}:app", "tokens", "create", "--fire", "nightly"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("rota_")
    listed = runner.invoke(cli, ["--app", f"{module}:app", "tokens", "list", "--json"])
    (row,) = json.loads(listed.stdout)
    assert row["fire"] == "nightly" and row["principal"] == "fire-nightly"
    emitted = runner.invoke(
        cli,
        [
            "--app",
            f"{module}:app",
            "events",
            "emit",
            "invoice.paid",
            "--payload",
            '{"id": 9}',
            "--idempotency-key",
            "e9",
            "--json",
        ],
    )
    assert emitted.exit_code == 0, emitted.output
    shown = json.loads(emitted.stdout)
    assert shown["created"] is True and [r["name"] for r in shown["runs"]] == ["book"]
    app = App(database_url)
    define(app)
    try:
        with TestClient(create_api(app)) as client:
            fired = client.post("/api/jobs/nightly/runs", headers=bearer(token))
            assert fired.status_code == 202, fired.text
            assert client.post("/api/jobs/payroll/runs", headers=bearer(token)).status_code == 403
            assert client.get("/api/runs", headers=bearer(token)).status_code == 403
    finally:
        app.close()
