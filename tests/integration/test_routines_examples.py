"""The two example routines in examples/routines, offline, on both databases: the personal
digest runs as alice with her read-only tools; the managed triage agent runs as svc-triage on
each new ticket, and its P1 assignment waits for a support lead; `rota routines show`
compares their cost under the plans the example declares; and firing them over HTTP with a
per-routine token (`rota tokens create --fire NAME`): a token fires only its routine."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from rota import App
from rota.api import create_api
from rota.cli import app as cli
from rota.identity import admin, tokens
from rota.model import RunState
from rota.storage.audit import RUN_REQUESTED
from rota.testing import say, scripted

ROOT = Path(__file__).resolve().parents[2]
HUMAN = admin.Actor("root", "human")


@pytest.fixture
def example(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh import of examples.routines.app on the test's database."""
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in [m for m in sys.modules if m.startswith("examples")]:
        del sys.modules[name]
    module = importlib.import_module("examples.routines.app")
    module.ASSIGNED.clear()
    yield module
    module.app.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_both_example_routines_load(example: ModuleType) -> None:
    assert example.loaded.problems == []
    assert [r.name for r in example.loaded.routines] == ["daily-digest", "ticket-triage"]


def test_the_personal_digest_runs_as_alice_with_read_only_tools(example: ModuleType) -> None:
    app = example.app
    handle = app.run_now("daily-digest")
    app.drain()
    run = handle.get()
    assert (run.state, run.principal) == (RunState.SUCCEEDED, "alice")
    assert "invoice 1042 is overdue" in run.result
    tools = app.routines.built["daily-digest"].agent.tools.values()
    assert all(t.read_only for t in tools)


def test_the_managed_triage_runs_as_its_service_account_and_p1_waits_for_a_lead(
    example: ModuleType,
) -> None:
    app = example.app
    emitted = app.emit("ticket.opened", {"queue": "support", "ticket_id": "T-1"})
    assert app.emit("ticket.opened", {"queue": "sales"}).runs == []  # match: queue support
    app.drain()
    [handle] = emitted.runs
    assert handle.get().state == RunState.WAITING
    assert example.ASSIGNED == []
    [request] = app.store.approvals()
    assert request.approvers == ("support",)
    app.store.decide_approval(request.id, "lead", True, "outage", app.clock.now(), via="test")
    app.drain()
    run = handle.get()
    assert (run.state, run.principal) == (RunState.SUCCEEDED, "svc-triage")
    assert run.result == {"ticket_id": "T-1", "team": "payments", "priority": "p1"}
    assert example.ASSIGNED == [{"ticket_id": "T-1", "team": "payments", "priority": "p1"}]


def test_show_compares_the_billing_models_from_the_routines_own_runs(
    example: ModuleType, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = example.app
    app.run_now("daily-digest")
    app.drain()
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    args = ["--app", "examples.routines.app:app", "routines", "show", "daily-digest", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert (found["kind"], found["runs_as"]) == ("personal", "alice")
    assert found["scopes"] == ["calendar:read", "mail:read"]
    cost = found["cost"]
    assert cost["runs"] == 1 and cost["billed_under"] == "subscription"
    plans = {p["plan"]: p for p in cost["plans"]}
    assert set(plans) == {"api", "subscription", "session"}
    assert plans["subscription"]["billed"] and not plans["session"]["billed"]
    assert plans["subscription"]["kind"] == "subscription"
    text = runner.invoke(cli, args[:-1])
    assert "personal routine of user alice" in text.output
    assert "subscription (subscription): $" in text.output and "(billed)" in text.output


# -- the fire endpoint -------------------------------------------------------------------


@pytest.fixture
def client(example: ModuleType) -> Iterator[TestClient]:
    with TestClient(create_api(example.app)) as c:
        yield c


def test_a_fire_token_fires_only_its_routine(example: ModuleType, client: TestClient) -> None:
    app = example.app
    issued = tokens.issue_fire(app.store, "daily-digest", HUMAN)
    fired = client.post(
        "/api/routines/daily-digest/fire",
        json={"text": "Skip the mail today."},
        headers=bearer(issued.token),
    )
    assert fired.status_code == 202, fired.text
    run_id = fired.json()["run_id"]
    assert fired.json() == {"run_id": run_id, "url": f"/api/runs/{run_id}"}
    run = app.get_run(run_id)
    assert (run.trigger, run.principal) == ("api", "alice")
    assert run.payload == {"text": "Skip the mail today."}
    [record] = app.store.audit_records(action=RUN_REQUESTED)
    assert (record.actor, record.run_id) == ("fire-daily-digest", run_id)

    other = client.post("/api/routines/ticket-triage/fire", json={}, headers=bearer(issued.token))
    assert other.status_code == 403
    assert other.json()["message"].startswith(
        "this token may only fire 'daily-digest', not 'ticket-triage'"
    )
    runs = client.get("/api/runs", headers=bearer(issued.token))
    assert runs.status_code == 403
    assert len(app.runs(names=["ticket-triage"])) == 0


def test_fire_refusals_name_what_is_wrong(example: ModuleType, client: TestClient) -> None:
    app = example.app
    app.principal("ops", roles=["operator"])
    ops = bearer(tokens.issue(app.store, "ops", HUMAN).token)
    no_token = client.post("/api/routines/daily-digest/fire", json={})
    assert no_token.status_code == 401
    unknown = client.post("/api/routines/nope/fire", json={}, headers=ops)
    assert (unknown.status_code, unknown.json()["message"]) == (404, "no routine named 'nope'")
    extra = client.post("/api/routines/daily-digest/fire", json={"txt": "x"}, headers=ops)
    assert extra.status_code == 400 and "txt" in extra.json()["message"]
    wrong = client.post("/api/routines/daily-digest/fire", json={"text": 5}, headers=ops)
    assert wrong.status_code == 400 and "text" in wrong.json()["message"]
    assert app.runs(names=["daily-digest"]) == []  # nothing was enqueued by a refusal
    for _ in range(3):  # per_day: 3
        assert client.post("/api/routines/daily-digest/fire", headers=ops).status_code == 202
    capped = client.post("/api/routines/daily-digest/fire", json={}, headers=ops)
    assert capped.status_code == 409 and capped.json()["error"] == "capped"
    assert "per_day 3 used up" in capped.json()["message"]
    [record] = app.store.capped_runs(["daily-digest"])
    assert (record.outcome, record.trigger) == ("dropped", "api")


def test_a_routine_without_an_api_trigger_is_not_fired_over_http(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "quiet.md").write_text(
        "---\nname: quiet\nowner: alice\nmodel: scripted:quiet\n---\nHello.\n"
    )
    app = App(database_url)
    app.principal("alice", kind="user")
    with scripted("quiet", script=[say("hi")]):
        app.load_routines(tmp_path)
    issued = tokens.issue_fire(app.store, "quiet", HUMAN)
    try:
        with TestClient(create_api(app)) as c:
            answer = c.post("/api/routines/quiet/fire", json={}, headers=bearer(issued.token))
    finally:
        app.close()
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "no_api_trigger",
        "message": "routine 'quiet' cannot be fired over HTTP: add `- api: true` to the "
        f"triggers in {tmp_path / 'quiet.md'}",
    }
