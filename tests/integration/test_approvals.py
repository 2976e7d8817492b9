"""Human approval gates on both databases: ctx.approval parks a run until a principal with
the right role decides (or the deadline passes), survives restarts, is decided at most once,
refuses and audits bad decisions, gates agent tool calls, and announces new requests through
a webhook that retries."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_time import HOUR, START
from together import together
from typer.testing import CliRunner

from rota import Agent, App, FakeClock, RunHandle, RunState, tool
from rota.approvals import ApprovalRequest, ApprovalWebhook
from rota.approvals.notify import JOB as NOTIFY_JOB
from rota.cli import app as cli
from rota.errors import ApprovalNotFound, ApprovalRefused, ConfigError
from rota.identity.audit import verify_chain
from rota.storage.audit import (
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    APPROVAL_REQUESTED,
    APPROVAL_TIMED_OUT,
)
from rota.testing import ScriptedModel, call, say


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[App]:
    a = App(database_url, clock=clock)
    people(a)
    yield a
    a.close()


def people(app: App) -> None:
    app.principal("alice", kind="user", roles=["approver:finance"])
    app.principal("bob", kind="user", roles=["viewer"])
    app.principal("root", kind="user", roles=["admin"])


def refund_flow(app: App, **ask: Any) -> None:
    """A workflow that asks finance, and returns what it was told."""

    @app.workflow(name=ask.pop("name", "refund"), retries=ask.pop("retries", 0))
    async def flow(ctx: Any) -> dict[str, Any]:
        decision = await ctx.approval(
            "Refund $500 to acme?", approvers="finance", context={"amount_cents": 50_000}, **ask
        )
        return {
            "approved": decision.approved,
            "truthy": bool(decision),
            "status": decision.status,
            "by": decision.decided_by,
            "comment": decision.comment,
            "timed_out": decision.timed_out,
            "fallback": decision.fallback,
            "request": decision.request_id,
        }


def pending(app: App) -> ApprovalRequest:
    (request,) = app.store.approvals()
    return request


def decide(app: App, request_id: str, who: str, approve: bool, comment: str | None = None) -> Any:
    return app.store.decide_approval(request_id, who, approve, comment, app.clock.now(), via="test")


def done(handle: RunHandle) -> Any:
    run = handle.get()
    assert run.state == RunState.SUCCEEDED, (run.state, run.error)
    return run.result


def actions(app: App, prefix: str = "approval.") -> list[tuple[str, str, str]]:
    records = sorted(app.store.audit_records(limit=200), key=lambda r: r.seq)
    return [(r.action, r.actor, r.actor_kind) for r in records if r.action.startswith(prefix)]


# -- deciding ------------------------------------------------------------------------------


def test_an_approval_parks_the_run_and_the_decision_resumes_it(app: App, clock: FakeClock) -> None:
    refund_flow(app, timeout="4h")
    handle = app.run_now("refund")
    assert app.drain().parked == 1
    run = handle.get()
    assert (run.state, run.lease_owner, run.run_after) == (RunState.WAITING, None, START + 4 * HOUR)

    request = pending(app)
    assert (request.question, request.approvers, request.status) == (
        "Refund $500 to acme?",
        ("finance",),
        "pending",
    )
    assert (request.context, request.deadline, request.on_timeout) == (
        {"amount_cents": 50_000},
        START + 4 * HOUR,
        "reject",
    )
    (wait,) = app.store.waits([handle.id])
    assert (wait.kind, wait.status, wait.detail["approval_id"]) == (
        "approval",
        "waiting",
        request.id,
    )

    clock.advance(60)
    decided = decide(app, request.id, "alice", True, "  fine  ")
    assert (decided.status, decided.decided_by, decided.comment) == ("approved", "alice", "fine")
    assert handle.state == "ENQUEUED"  # queued by the decision itself
    app.drain()
    assert done(handle) == {
        "approved": True,
        "truthy": True,
        "status": "approved",
        "by": "alice",
        "comment": "fine",
        "timed_out": False,
        "fallback": None,
        "request": request.id,
    }
    (step,) = app.store.steps(handle.id)
    assert (step.key, step.started_at, step.finished_at) == ("approval", START, START + 60)
    assert app.store.approvals() == []  # nothing pending
    assert app.store.approval(request.id).decided_at == START + 60
    assert actions(app) == [
        (APPROVAL_REQUESTED, "rota:anonymous", "machine"),
        (APPROVAL_GRANTED, "alice", "human"),
    ]
    assert verify_chain(app.store).ok


def test_a_rejection_reaches_the_workflow_with_the_comment(app: App) -> None:
    refund_flow(app)
    handle = app.run_now("refund")
    app.drain()
    request = pending(app)
    assert request.deadline is None  # no timeout: waits until someone decides
    decide(app, request.id, "root", False, "not this quarter")  # an admin decides any request
    app.drain()
    result = done(handle)
    assert (result["approved"], result["truthy"], result["status"]) == (False, False, "rejected")
    assert (result["by"], result["comment"]) == ("root", "not this quarter")
    assert actions(app)[-1] == (APPROVAL_REJECTED, "root", "human")


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("on_timeout", "approved"), [("reject", False), ("approve", True)])
def test_a_timeout_applies_on_timeout_and_is_recorded(
    app: App, clock: FakeClock, on_timeout: str, approved: bool
) -> None:
    refund_flow(app, timeout="4h", on_timeout=on_timeout)
    handle = app.run_now("refund")
    app.drain()
    request = pending(app)

    clock.advance(4 * HOUR - 1)
    app.drain()
    assert handle.state == "WAITING"
    clock.advance(1)
    app.drain()
    result = done(handle)
    assert (result["approved"], result["status"], result["timed_out"]) == (
        approved,
        "timed_out",
        True,
    )
    assert result["by"] is None and result["request"] == request.id
    stored = app.store.approval(request.id)
    assert (stored.status, stored.decided_at, stored.decided_by) == (
        "timed_out",
        START + 4 * HOUR,
        None,
    )
    assert actions(app)[-1] == (APPROVAL_TIMED_OUT, "rota:worker", "machine")
    with pytest.raises(ApprovalRefused, match=r"timed out .* it can no longer be decided") as exc:
        decide(app, request.id, "alice", True)
    assert exc.value.state == "timed_out"


def test_on_timeout_fail_fails_the_run_with_a_clear_error(app: App, clock: FakeClock) -> None:
    refund_flow(app, timeout="1h", on_timeout="fail", retries=3)
    handle = app.run_now("refund")
    app.drain()
    clock.advance(HOUR)
    app.drain()
    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.failures == 1  # not retried: every retry would meet the same timeout
    assert run.error["type"] == "ApprovalTimedOut"
    assert "nobody decided approval" in run.error["message"]
    assert "'Refund $500 to acme?'" in run.error["message"]


def test_a_fallback_step_runs_once_when_nobody_decides(app: App, clock: FakeClock) -> None:
    seen: list[dict[str, Any]] = []

    def escalate_to_manager(request: dict[str, Any]) -> str:
        seen.append(request)
        return f"paged the manager about {request['id']}"

    @app.workflow
    async def flow(ctx: Any) -> Any:
        decision = await ctx.approval(
            "Ship it?", approvers=["release", "ops"], timeout="30m", on_timeout=escalate_to_manager
        )
        await ctx.step("after", lambda: None)
        return [decision.approved, decision.status, decision.fallback]

    handle = app.run_now("flow")
    app.drain()
    request = pending(app)
    assert (request.on_timeout, request.approvers) == ("fallback", ("release", "ops"))
    clock.advance(1800)
    app.drain()
    assert done(handle) == [False, "timed_out", f"paged the manager about {request.id}"]
    assert len(seen) == 1 and seen[0]["question"] == "Ship it?"
    assert [s.key for s in app.store.steps(handle.id)] == [
        "approval",
        "approval/fallback",
        "after",
    ]


# -- restarts --------------------------------------------------------------------------------


def test_a_waiting_approval_survives_a_restart_and_resumes_on_a_cli_decision(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    executions: list[str] = []

    def make_app() -> App:
        new = App(database_url)  # the real clock: the CLI decides at the real time
        people(new)

        @new.workflow
        async def payout(ctx: Any, payload: dict[str, Any]) -> Any:
            await ctx.step("prepare", executions.append, "prepare")
            decision = await ctx.approval(
                f"Pay out {payload['amount']}?", approvers="finance", timeout="1d"
            )
            if decision:
                await ctx.step("pay", executions.append, "pay")
            return decision.comment

        return new

    first = make_app()
    handle = first.run_now("payout", {"amount": 1200})
    first.drain()
    assert handle.state == "WAITING"
    first.close()  # every process stops: nothing is kept in memory

    monkeypatch.setenv("ROTA_ACTOR", "alice")  # the person at the terminal is principal alice
    listed = CliRunner().invoke(
        cli, ["--database-url", database_url, "approvals", "list", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (request,) = json.loads(listed.stdout)
    result = CliRunner().invoke(
        cli,
        ["--database-url", database_url, "approvals", "approve", request["id"], "-m", "go"],
    )
    assert result.exit_code == 0, result.output
    assert f"approved {request['id']} as alice" in result.stderr

    second = make_app()  # a new process, as far as the database can tell
    second.drain()
    assert second.get_run(handle.id).result == "go"
    assert executions == ["prepare", "pay"]
    (granted,) = [r for r in second.store.audit_records() if r.action == APPROVAL_GRANTED]
    assert (granted.actor, granted.detail["via"], granted.detail["terminal_user"]) == (
        "alice",
        "cli",
        "alice",
    )
    second.close()


def test_a_live_worker_resumes_on_the_decision_and_on_the_deadline(
    app: App, clock: FakeClock
) -> None:
    refund_flow(app, timeout="1h")
    decided, forgotten = app.run_now("refund"), app.run_now("refund")

    async def scenario() -> None:
        worker = app.worker(poll_interval_s=0.05)
        task = asyncio.create_task(worker.run())
        await until(lambda: len(app.store.approvals()) == 2)
        request = next(r for r in app.store.approvals() if r.run_id == decided.id)
        await asyncio.to_thread(decide, app, request.id, "alice", True)
        await until(lambda: decided.state == "SUCCEEDED")
        assert forgotten.state == "WAITING"
        clock.advance(HOUR)  # the worker notices the deadline by itself
        await until(lambda: forgotten.state == "SUCCEEDED")
        worker.stop()
        await task

    asyncio.run(scenario())
    assert done(decided)["by"] == "alice"
    assert done(forgotten)["status"] == "timed_out"


def test_a_retried_run_asks_afresh(app: App) -> None:
    refund_flow(app)
    handle = app.run_now("refund")
    app.drain()
    first = pending(app)
    app.store.cancel(handle.id, app.clock.now())
    app.store.retry(handle.id, app.clock.now())
    app.drain()
    second = pending(app)
    assert second.id != first.id and second.run_id == handle.id
    assert app.store.approval(first.id).status == "expired"
    decide(app, second.id, "alice", True)
    app.drain()
    assert done(handle)["request"] == second.id


# -- bad input -------------------------------------------------------------------------------


def test_a_non_approver_is_refused_and_audited_and_nothing_changes(app: App) -> None:
    refund_flow(app)
    handle = app.run_now("refund")
    app.drain()
    request = pending(app)

    for who, why in [
        ("bob", "principal 'bob' is not an approver of it"),
        ("mallory", "there is no principal named 'mallory'"),
    ]:
        with pytest.raises(ApprovalRefused, match=why) as exc:
            decide(app, request.id, who, True)
        assert exc.value.state == "forbidden"
        assert "may be decided by approver:finance (or admins)" in str(exc.value)
    assert pending(app).status == "pending" and handle.state == "WAITING"
    assert actions(app)[-2:] == [
        (APPROVAL_REFUSED, "bob", "human"),
        (APPROVAL_REFUSED, "mallory", "human"),
    ]
    refused = [r for r in app.store.audit_records() if r.action == APPROVAL_REFUSED]
    assert {r.detail["attempted"] for r in refused} == {"approve"}
    assert all(r.subject == request.id and r.run_id == handle.id for r in refused)


def test_a_disabled_approver_is_refused(app: App) -> None:
    from rota.identity import admin

    refund_flow(app)
    app.run_now("refund")
    app.drain()
    admin.set_disabled(app.store, "alice", admin.APP, True)
    with pytest.raises(ApprovalRefused, match="principal 'alice' is disabled"):
        decide(app, pending(app).id, "alice", True)


def test_deciding_twice_or_late_or_an_unknown_id_is_refused_by_name(
    app: App, clock: FakeClock
) -> None:
    refund_flow(app, timeout="1h")
    app.run_now("refund")
    app.drain()
    request = pending(app)
    decide(app, request.id, "alice", False, "no")
    with pytest.raises(ApprovalRefused, match="was already rejected by alice") as exc:
        decide(app, request.id, "root", True)
    assert exc.value.state == "rejected"
    assert app.store.approval(request.id).decided_by == "alice"

    refund_flow(app, name="late", timeout="1h")
    app.run_now("late")
    app.drain()
    late = pending(app)
    clock.advance(HOUR)  # past its deadline, before any worker has timed it out
    with pytest.raises(ApprovalRefused, match=r"expired at .*: its deadline passed") as exc:
        decide(app, late.id, "alice", True)
    assert exc.value.state == "expired"
    assert app.store.approval(late.id).status == "pending"  # the sweep times it out
    app.drain()
    assert app.store.approval(late.id).status == "timed_out"

    with pytest.raises(ApprovalNotFound, match="no approval request with id 'nope'"):
        decide(app, "nope", "alice", True)


def test_cancelling_the_run_expires_its_request(app: App) -> None:
    refund_flow(app)
    handle = app.run_now("refund")
    app.drain()
    request = pending(app)
    app.store.cancel(handle.id, app.clock.now())
    assert app.store.approval(request.id).status == "expired"
    with pytest.raises(ApprovalRefused, match=r"expired.*its run stopped waiting") as exc:
        decide(app, request.id, "alice", True)
    assert exc.value.state == "expired"
    assert handle.state == "CANCELLED"


def test_two_approvers_deciding_at_once_decide_once(app: App) -> None:
    app.principal("carol", kind="user", roles=["approver:finance"])
    refund_flow(app)
    handles = [app.run_now("refund") for _ in range(8)]
    app.drain()
    for request in app.store.approvals():
        outcomes = together(
            lambda r=request: _attempt(app, r.id, "alice", True),
            lambda r=request: _attempt(app, r.id, "carol", False),
        )
        winners = [o for o in outcomes if isinstance(o, ApprovalRequest)]
        losers = [o for o in outcomes if isinstance(o, tuple)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        _, state, message = losers[0]
        assert state == winners[0].status
        assert f"was already {winners[0].status} by {winners[0].decided_by}" in message
        stored = app.store.approval(request.id)
        assert (stored.status, stored.decided_by) == (winners[0].status, winners[0].decided_by)
    app.drain()
    for handle in handles:
        (step,) = app.store.steps(handle.id)
        assert step.attempts == 1
        assert done(handle)["by"] in ("alice", "carol")
    decisions = [a for a, _, _ in actions(app) if a in (APPROVAL_GRANTED, APPROVAL_REJECTED)]
    assert len(decisions) == 8


def test_bad_approval_arguments_fail_the_run_with_a_clear_error(app: App) -> None:
    cases: dict[str, Callable[[Any], Any]] = {
        "no-question": lambda ctx: ctx.approval("  ", approvers="finance"),
        "bad-group": lambda ctx: ctx.approval("ok?", approvers="Finance Team"),
        "bad-policy": lambda ctx: ctx.approval("ok?", on_timeout="ignore"),
        "zero-timeout": lambda ctx: ctx.approval("ok?", timeout=0),
        "bad-context": lambda ctx: ctx.approval("ok?", context={"when": object()}),
    }
    for name, ask in cases.items():
        app.add(_asking(ask), kind="workflow", name=name)
    handles = {name: app.run_now(name) for name in cases}
    app.drain()
    messages = {name: h.get().error["message"] for name, h in handles.items()}
    assert "ctx.approval needs a question" in messages["no-question"]
    assert "approver group 'Finance Team' is not a valid group name" in messages["bad-group"]
    assert "on_timeout='ignore' is not one of" in messages["bad-policy"]
    assert "timeout must be more than 0" in messages["zero-timeout"]
    assert "approval's context" in messages["bad-context"]
    assert app.store.approvals(statuses=()) == []


# -- agent tool gates ----------------------------------------------------------------------


def refund_agent(app: App, executed: list[int], **gate: Any) -> ScriptedModel:
    @tool(approvers="finance", **gate)
    def refund(customer_id: str, amount_cents: int) -> str:
        """Refund a customer."""
        executed.append(amount_cents)
        return f"refunded {amount_cents} to {customer_id}"

    def reply(request: Any, turn: int) -> Any:
        if turn == 1:
            amount = json.loads(request.messages[0].text)["amount_cents"]
            return say("The charge was duplicated; refunding it.") + call(
                refund, customer_id="acme", amount_cents=amount
            )
        return say(f"done: {request.messages[-1].tool_results[0].content}")

    model = ScriptedModel("refunder", fn=reply)
    app.agent(Agent("refunder", model, "Refund duplicates.", tools=[refund]))
    return model


def test_a_gated_tool_runs_only_once_approved(app: App) -> None:
    executed: list[int] = []
    model = refund_agent(app, executed, requires_approval=True)
    handle = app.run_now("refunder", {"amount_cents": 50_000})
    app.drain()
    assert handle.state == "WAITING" and executed == []
    request = pending(app)
    assert request.question == (
        "Allow agent 'refunder' to call refund(customer_id=\"acme\", amount_cents=50000)?"
    )
    context = request.context
    assert (context["tool"], context["arguments"]) == (
        "refund",
        {"customer_id": "acme", "amount_cents": 50_000},
    )
    assert context["reasoning"] == ["The charge was duplicated; refunding it."]
    assert context["cost_so_far"]["model_calls"] == 1
    assert request.step_key == "tool:refund/approval"
    steps = {s.key: s.state for s in app.store.steps(handle.id)}
    assert steps == {"model#1": "SUCCEEDED"}  # the parked tool step is not recorded as failed

    decide(app, request.id, "alice", True)
    app.drain()
    assert done(handle) == "done: refunded 50000 to acme"
    assert executed == [50_000]
    assert model.calls == 2  # the first model call was replayed from its checkpoint
    keys = [s.key for s in app.store.steps(handle.id)]
    assert keys == ["model#1", "tool:refund", "tool:refund/approval", "model#2"]
    assert actions(app, "tool.") == [("tool.called", "rota:anonymous", "machine")]


def test_a_rejected_tool_call_tells_the_model_who_and_why(app: App) -> None:
    executed: list[int] = []
    model = refund_agent(app, executed, requires_approval=True)
    handle = app.run_now("refunder", {"amount_cents": 50_000})
    app.drain()
    decide(app, pending(app).id, "alice", False, "customer already got a credit")
    app.drain()
    assert executed == []
    (result,) = model.requests[-1].messages[-1].tool_results
    assert result.is_error
    assert result.content.endswith("rejected by alice: customer already got a credit")
    assert done(handle).endswith("rejected by alice: customer already got a credit")
    assert actions(app, "tool.") == []  # never called


def test_a_per_call_rule_gates_only_big_refunds(app: App) -> None:
    executed: list[int] = []
    refund_agent(app, executed, requires_approval=lambda args: args["amount_cents"] > 10_000)
    small = app.run_now("refunder", {"amount_cents": 2_500})
    big = app.run_now("refunder", {"amount_cents": 25_000})
    app.drain()
    assert done(small) == "done: refunded 2500 to acme"
    assert big.state == "WAITING" and executed == [2_500]
    request = pending(app)
    assert request.run_id == big.id and request.context["arguments"]["amount_cents"] == 25_000


def test_a_gated_tool_call_nobody_decides_is_not_run(app: App, clock: FakeClock) -> None:
    executed: list[int] = []
    model = refund_agent(app, executed, requires_approval=True, approval_timeout="2h")
    handle = app.run_now("refunder", {"amount_cents": 50_000})
    app.drain()
    clock.advance(2 * HOUR)
    app.drain()
    assert executed == [] and handle.state == "SUCCEEDED"
    (result,) = model.requests[-1].messages[-1].tool_results
    assert "nobody approved this call of 'refund' in time" in result.content


def test_a_gated_tool_needs_a_durable_run() -> None:
    executed: list[int] = []

    @tool(requires_approval=True)
    def wipe(table: str) -> str:
        """Wipe a table."""
        executed.append(1)
        return "wiped"

    model = ScriptedModel("wiper", script=[call(wipe, table="users"), say("could not")])
    result = Agent("wiper", model, "Wipe.", tools=[wipe]).run_sync("go")
    assert result.output == "could not" and executed == []
    (tool_result,) = model.requests[1].messages[-1].tool_results
    assert "needs a human's approval, and only a durable run can wait" in tool_result.content


def test_tool_approval_settings_are_checked_when_the_tool_is_defined() -> None:
    with pytest.raises(ConfigError, match="approver group 'Finance!' is not a valid group"):

        @tool(requires_approval=True, approvers="Finance!")
        def pay(amount: int) -> str:
            return "paid"


# -- notifications -------------------------------------------------------------------------


class Hook:
    """A local chat webhook that answers `statuses` in turn (then 200), recording bodies."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[Any] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try later")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/B000"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook([500, 503])
    yield h
    h.close()


def test_a_new_request_is_announced_with_retries(
    database_url: str, clock: FakeClock, hook: Hook
) -> None:
    app = App(database_url, clock=clock, approval_webhook=ApprovalWebhook(hook.url, backoff=0))
    people(app)
    refund_flow(app, timeout="4h")
    handle = app.run_now("refund")
    app.drain()

    request = pending(app)
    assert handle.state == "WAITING"  # the announcement never holds the run
    assert len(hook.bodies) == 3  # two failures, then delivered
    body = hook.bodies[-1]
    assert body["text"].startswith("Approval needed: Refund $500 to acme?")
    assert request.id in body["text"]
    assert {b["type"] for b in body["blocks"]} == {"header", "section", "context"}
    assert f"rota approvals approve {request.id}" in json.dumps(body["blocks"])
    (announce,) = app.runs(names=[NOTIFY_JOB])
    assert (announce.state, announce.attempt, announce.parent_id) == (
        RunState.SUCCEEDED,
        3,
        handle.id,
    )
    assert hook.url not in json.dumps(announce.payload)  # the URL is a secret: not stored
    app.close()


def test_an_announcement_that_keeps_failing_is_kept_and_blocks_nothing(
    database_url: str, clock: FakeClock
) -> None:
    down = Hook([500] * 10)
    try:
        app = App(
            database_url,
            clock=clock,
            approval_webhook=ApprovalWebhook(down.url, retries=2, backoff=0),
        )
        people(app)
        refund_flow(app)
        handle = app.run_now("refund")
        app.drain()
        (announce,) = app.runs(names=[NOTIFY_JOB])
        assert announce.state == RunState.FAILED and "answered 500" in announce.error["message"]
        assert len(down.bodies) == 3
        decide(app, pending(app).id, "alice", True)  # the request itself is unaffected
        app.drain()
        assert done(handle)["approved"] is True
        app.close()
    finally:
        down.close()


def test_the_webhook_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_APPROVAL_WEBHOOK_URL", "https://hooks.example.com/x")
    app = App("sqlite:///:memory:")
    assert app.approval_webhook is not None and app.approval_webhook.url.endswith("/x")
    assert NOTIFY_JOB in app.definitions
    monkeypatch.delenv("ROTA_APPROVAL_WEBHOOK_URL")
    assert App("sqlite:///:memory:").approval_webhook is None
    with pytest.raises(ConfigError, match="approval_webhook must be an http"):
        App("sqlite:///:memory:", approval_webhook="hooks.slack.com")


# -- helpers -------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll off the loop until condition() holds (a generous timeout, not a threshold)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _asking(ask: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def flow(ctx: Any) -> None:
        await ask(ctx)

    return flow


def _attempt(app: App, request_id: str, who: str, approve: bool) -> Any:
    try:
        return decide(app, request_id, who, approve)
    except ApprovalRefused as exc:  # kept as text: a traceback would hold the thread's connection
        return ("refused", exc.state, str(exc))
