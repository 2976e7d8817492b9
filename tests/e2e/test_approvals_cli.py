"""Approvals end to end: `rota approvals list|approve|reject` and the HTTP API, on a real
store, deciding workflows that a worker then resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from rota import App
from rota.api import create_api
from rota.cli import app as cli
from rota.identity import admin, tokens
from rota.storage.audit import APPROVAL_GRANTED, APPROVAL_REFUSED, APPROVAL_REJECTED

ROTA = Path(sys.executable).parent / "rota"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_ACTOR", "alice")
    monkeypatch.delenv("ROTA_APP", raising=False)
    monkeypatch.delenv("ROTA_APPROVAL_WEBHOOK_URL", raising=False)


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    a = App(database_url)
    a.principal("alice", kind="user", roles=["approver:finance"])
    a.principal("bob", kind="user", roles=["viewer"])
    a.principal("svc-bot", roles=["approver:finance"])

    @a.workflow
    async def refund(ctx: Any, payload: dict[str, Any]) -> Any:
        decision = await ctx.approval(
            f"Refund {payload['amount']} to {payload['customer']}?",
            approvers="finance",
            timeout="1d",
            context=payload,
        )
        return {"approved": decision.approved, "by": decision.decided_by, "why": decision.comment}

    yield a
    a.close()


def rota(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def ask(app: App, amount: int = 500) -> tuple[Any, str]:
    """A refund run parked on its request; returns the run's handle and the request id."""
    handle = app.run_now("refund", {"amount": amount, "customer": "acme"})
    app.drain()
    (request,) = [r for r in app.store.approvals() if r.run_id == handle.id]
    return handle, request.id


# -- the CLI -------------------------------------------------------------------------------


def test_list_approve_and_reject_from_the_terminal(app: App, database_url: str) -> None:
    first, first_id = ask(app, 500)
    second, second_id = ask(app, 900)

    table = rota(database_url, "approvals", "list")
    assert table.exit_code == 0, table.output
    assert first_id in table.stdout and "Refund 900 to acme?" in table.stdout
    assert "approver:finance (or admins)" in table.stdout
    listed = json.loads(rota(database_url, "approvals", "list", "--json").stdout)
    assert {r["id"] for r in listed} == {first_id, second_id}
    assert listed[0]["context"] == {"amount": 900, "customer": "acme"}

    approved = rota(database_url, "approvals", "approve", first_id, "--comment", "ok by me")
    assert approved.exit_code == 0, approved.output
    assert f"approved {first_id} as alice: run {first.id} (refund) resumes" in approved.stderr
    rejected = rota(database_url, "approvals", "reject", second_id, "--as", "svc-bot")
    assert rejected.exit_code == 0, rejected.output

    app.drain()
    assert first.result() == {"approved": True, "by": "alice", "why": "ok by me"}
    assert second.result() == {"approved": False, "by": "svc-bot", "why": None}
    assert rota(database_url, "approvals", "list").stderr.strip() == "no pending approval requests"
    everything = rota(database_url, "approvals", "list", "--all")
    assert "approved by alice: ok by me" in everything.stdout
    assert "rejected by svc-bot" in everything.stdout
    decisions = [
        (r.action, r.actor, r.actor_kind)
        for r in sorted(app.store.audit_records(), key=lambda r: r.seq)
        if r.action in (APPROVAL_GRANTED, APPROVAL_REJECTED)
    ]
    assert decisions == [
        (APPROVAL_GRANTED, "alice", "human"),
        (APPROVAL_REJECTED, "svc-bot", "machine"),
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [  # exit 3: not found, 4: refused (docs/cli.md)
        (["approve", "nope"], 3, "no approval request with id 'nope'"),
        (["approve", "{id}", "--as", "bob"], 4, "principal 'bob' is not an approver of it"),
        (["reject", "{id}", "--as", "eve"], 4, "there is no principal named 'eve'"),
    ],
)
def test_bad_decisions_exit_non_zero_with_the_reason_and_change_nothing(
    app: App, database_url: str, args: list[str], code: int, message: str
) -> None:
    handle, request_id = ask(app)
    result = rota(database_url, "approvals", *[a.format(id=request_id) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert app.store.approval(request_id).status == "pending"
    assert handle.state == "WAITING"


def test_a_decided_request_cannot_be_decided_again_from_the_terminal(
    app: App, database_url: str
) -> None:
    _, request_id = ask(app)
    assert rota(database_url, "approvals", "reject", request_id, "-m", "no").exit_code == 0
    again = rota(database_url, "approvals", "approve", request_id)
    assert again.exit_code == 4  # refused
    assert f"approval {request_id} was already rejected by alice" in again.stderr
    assert app.store.approval(request_id).status == "rejected"


def test_runs_list_and_show_say_what_the_run_waits_for(app: App, database_url: str) -> None:
    handle, request_id = ask(app)
    listed = rota(database_url, "runs", "list")
    assert f"approval {request_id} (finance)" in listed.stdout
    shown = rota(database_url, "runs", "show", handle.id, "--json")
    (wait,) = json.loads(shown.stdout)["waits"]
    assert (wait["kind"], wait["status"]) == ("approval", "waiting")


# -- the HTTP API --------------------------------------------------------------------------


@pytest.fixture
def api(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app)) as client:
        yield client


def token(app: App, principal: str) -> dict[str, str]:
    issued = tokens.issue(app.store, principal, admin.Actor("root", "human"))
    return {"Authorization": f"Bearer {issued.token}"}


def test_the_api_lists_and_decides_as_the_token_s_principal(app: App, api: TestClient) -> None:
    handle, request_id = ask(app)
    alice = token(app, "alice")

    listed = api.get("/api/approvals", headers=alice)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()] == [request_id]
    decided = api.post(
        f"/api/approvals/{request_id}/approve", headers=alice, json={"comment": "fine"}
    )
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["decided_by"]) == ("approved", "alice")
    app.drain()
    assert handle.result() == {"approved": True, "by": "alice", "why": "fine"}
    (granted,) = app.store.audit_records(action=APPROVAL_GRANTED)
    assert (granted.actor, granted.actor_kind, granted.detail["via"]) == ("alice", "human", "api")

    again = api.post(f"/api/approvals/{request_id}/reject", headers=alice)
    assert again.status_code == 409
    assert again.json()["state"] == "approved" and "already approved" in again.json()["message"]
    everything = api.get("/api/approvals?status=all", headers=alice).json()
    assert [r["status"] for r in everything] == ["approved"]


def test_the_api_refuses_non_approvers_unknown_ids_and_bad_bodies(
    app: App, api: TestClient
) -> None:
    handle, request_id = ask(app)
    bob, alice = token(app, "bob"), token(app, "alice")

    forbidden = api.post(f"/api/approvals/{request_id}/approve", headers=bob)
    assert forbidden.status_code == 403
    assert "principal 'bob' is not an approver" in forbidden.json()["message"]
    (refused,) = app.store.audit_records(action=APPROVAL_REFUSED)
    assert (refused.actor, refused.subject, refused.detail["via"]) == ("bob", request_id, "api")

    assert api.post("/api/approvals/nope/approve", headers=alice).status_code == 404
    bad = api.post(f"/api/approvals/{request_id}/approve", headers=alice, json={"note": "x"})
    assert bad.status_code == 400 and "comment" in bad.json()["message"]
    assert api.post(f"/api/approvals/{request_id}/approve").status_code == 401
    assert api.get("/api/approvals?status=maybe", headers=alice).status_code == 400
    assert app.store.approval(request_id).status == "pending" and handle.state == "WAITING"


def test_who_sees_which_requests(app: App, api: TestClient) -> None:
    app.principal("carol", kind="user", roles=["approver:legal"])
    _, request_id = ask(app)
    carol = token(app, "carol")  # approves for another group: sees nothing to decide
    assert api.get("/api/approvals", headers=carol).json() == []
    viewer = token(app, "bob")  # a viewer sees every request
    assert [r["id"] for r in api.get("/api/approvals", headers=viewer).json()] == [request_id]


# -- real processes ------------------------------------------------------------------------

PROCESS_APP = """
import os, signal
from rota import App

app = App()
app.principal("alice", kind="user", roles=["approver:finance"])

@app.workflow(priority=10)
async def payout(ctx):
    await ctx.step("prepare", lambda: os.getpid())
    decision = await ctx.approval("Pay out 1200?", approvers="finance", timeout="1d")
    pid = await ctx.step("pay", lambda: os.getpid())
    return {"approved": decision.approved, "by": decision.decided_by, "paid_in": pid}

@app.job(priority=0)
def stop_worker(ctx):
    os.kill(os.getpid(), signal.SIGTERM)
    return "stopping"
"""


def test_an_approval_survives_a_restart_of_every_process(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(PROCESS_APP))
    env = {**os.environ, "ROTA_DATABASE_URL": database_url, "ROTA_ACTOR": "alice"}

    def rota_process(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROTA), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    def work() -> None:  # one worker process, until it runs stop_worker
        assert rota_process("run", "stop_worker").returncode == 0
        worker = rota_process("worker", "--concurrency", "1", "--grace", "5", "--poll", "0.1")
        assert worker.returncode in (0, 128 + signal.SIGTERM), worker.stderr

    assert rota_process("db", "migrate").returncode == 0
    asked = rota_process("run", "payout")
    assert asked.returncode == 0, asked.stderr
    work()  # parks the payout, then stops
    (request,) = json.loads(rota_process("approvals", "list", "--json").stdout)
    approved = rota_process("approvals", "approve", request["id"], "-m", "ok")
    assert approved.returncode == 0, approved.stderr
    work()  # a new worker process resumes it

    (run,) = [
        r
        for r in json.loads(rota_process("runs", "list", "--json").stdout)
        if r["name"] == "payout"
    ]
    assert run["state"] == "SUCCEEDED"
    shown = json.loads(rota_process("runs", "show", run["id"], "--json").stdout)
    assert shown["result"]["approved"] is True and shown["result"]["by"] == "alice"
    steps = {s["key"]: s["result"] for s in shown["steps"]}
    assert list(steps) == ["prepare", "approval", "pay"]
    assert steps["prepare"] != steps["pay"]  # done by two different worker processes
