"""The Approvals inbox through Starlette's TestClient, on SQLite and PostgreSQL: what a
pending request shows (question, run, reasoning, cost so far), deciding with a comment
resumes the run, who may decide (the request's approver groups or admin; others see it
read-only and are refused with 403), CSRF, and bad forms and queries (4xx naming the field,
nothing decided)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from dashboard_client import csrf_of, signed_in

from rota import Agent, App, FakeClock, Price, ToolContext, tool
from rota.testing import ScriptedModel, answer, call, say

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PRICE = Price(input=Decimal(3), output=Decimal(15))


@tool(scopes=["billing:refund"], requires_approval=True, approvers="finance")
def refund(ctx: ToolContext, customer_id: str, cents: int) -> str:
    """Refund a customer."""
    return f"refunded {cents} to {customer_id}"


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = App(database_url, clock=FakeClock(START))
    built.principal("root", kind="user", roles=["admin"])
    built.principal("fin", kind="user", roles=["approver:finance"])
    built.principal("watcher", kind="user", roles=["viewer"])
    built.principal("ops", kind="user", roles=["operator"])
    built.principal("svc", kind="service", scopes=["billing:refund"])
    model = ScriptedModel(
        "inbox-refunder",
        script=[
            say("acme was charged twice for January")
            + call("refund", customer_id="acme", cents=500),
            answer("refund handled"),
        ],
    )
    built.agent(Agent("refunder", model, "Refund.", tools=[refund], price=PRICE), run_as="svc")
    try:
        yield built
    finally:
        built.close()


def last_audit(app: App, action: str) -> Any:
    return app.store.audit_page(
        actor=None, action=action, since=None, until=None, before_seq=None, limit=1
    )[0]


def waiting(app: App) -> Any:
    run = app.run_now("refunder", "refund acme")
    app.drain()
    (request,) = app.store.approvals()
    return run, request


def test_a_pending_request_shows_its_question_run_reasoning_and_cost(app: App) -> None:
    run, request = waiting(app)
    with signed_in(app, "fin") as client:
        page = html.unescape(client.get("/approvals").text)
    assert "Allow agent 'refunder' to call refund(" in page
    assert f'href="/runs/{run.id}"' in page
    assert "acme was charged twice for January" in page  # the model's text before the call
    assert "1 model call(s)" in page
    assert re.search(r"\$0\.000[1-9]\d*</span> for 1 model call", page)  # priced: not zero
    assert '"customer_id": "acme"' in page  # the context: the tool's arguments
    assert f'formaction="/approvals/{request.id}/approve"' in page
    assert "May decide: approver:finance (or admins)" in page


def test_approving_with_a_comment_resumes_the_run_and_moves_it_to_history(app: App) -> None:
    run, request = waiting(app)
    with signed_in(app, "fin") as client:
        page = client.get("/approvals").text
        answer_ = client.post(
            f"/approvals/{request.id}/approve",
            data={"csrf": csrf_of(page), "comment": "double charge confirmed"},
        )
        assert answer_.status_code == 303
        assert answer_.headers["location"] == "/approvals"
        decided = app.store.approval(request.id)
        assert (decided.status, decided.decided_by) == ("approved", "fin")
        assert decided.comment == "double charge confirmed"
        app.drain()
        assert app.store.get_run(run.id).state == "SUCCEEDED"
        after = html.unescape(client.get("/approvals").text)
    assert "Nothing is waiting for a decision" in after
    history = after[after.index("Decided and timed out") :]
    assert "double charge confirmed" in history and "approved" in history
    granted = last_audit(app, "approval.granted")
    assert granted.actor == "fin" and granted.detail["via"] == "dashboard"


def test_rejecting_resumes_the_run_with_the_rejection(app: App) -> None:
    run, request = waiting(app)
    with signed_in(app, "root") as client:
        page = client.get("/approvals").text
        answer_ = client.post(
            f"/approvals/{request.id}/reject", data={"csrf": csrf_of(page), "comment": "no"}
        )
        assert answer_.status_code == 303
    assert app.store.approval(request.id).status == "rejected"
    app.drain()
    assert app.store.get_run(run.id).state == "SUCCEEDED"  # the model was told and answered


@pytest.mark.parametrize("name", ["watcher", "ops"])
def test_who_may_not_decide_sees_it_read_only_and_is_refused(app: App, name: str) -> None:
    _, request = waiting(app)
    with signed_in(app, name) as client:
        page = html.unescape(client.get("/approvals").text)
        assert "Allow agent 'refunder'" in page
        assert "Read-only" in page and "formaction=" not in page
        refused = client.post(
            f"/approvals/{request.id}/approve", data={"csrf": csrf_of(page), "comment": "go"}
        )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "is not an approver of it" in html.unescape(refused.text)
    assert app.store.approval(request.id).status == "pending"
    assert last_audit(app, "approval.refused").actor == name


def test_a_principal_without_viewer_sees_only_what_it_may_decide(app: App) -> None:
    waiting(app)
    app.principal("legal", kind="user", roles=["approver:legal"])
    with signed_in(app, "legal") as client:
        page = html.unescape(client.get("/approvals").text)
    assert "Nothing is waiting for a decision" in page
    assert "Allow agent 'refunder'" not in page


def test_a_decision_without_the_csrf_token_is_refused_and_decides_nothing(app: App) -> None:
    _, request = waiting(app)
    with signed_in(app, "root") as client:
        for verb in ("approve", "reject"):
            for data in ({"comment": "x"}, {"csrf": "forged", "comment": "x"}):
                refused = client.post(f"/approvals/{request.id}/{verb}", data=data)
                assert refused.status_code == 403
                assert "security token is missing or wrong" in refused.text
    assert app.store.approval(request.id).status == "pending"


def test_a_second_decision_is_a_409_naming_the_first(app: App) -> None:
    _, request = waiting(app)
    with signed_in(app, "root") as client:
        csrf = csrf_of(client.get("/approvals").text)
        assert (
            client.post(f"/approvals/{request.id}/approve", data={"csrf": csrf}).status_code == 303
        )
        again = client.post(f"/approvals/{request.id}/reject", data={"csrf": csrf})
    assert again.status_code == 409
    assert "was already approved by root" in html.unescape(again.text)
    assert app.store.approval(request.id).status == "approved"


@pytest.mark.parametrize(
    ("target", "form", "status", "names"),
    [
        (
            "/approvals/{id}/approve",
            {"comment": "x", "amount": "5"},
            400,
            "unknown form field 'amount'",
        ),
        (
            "/approvals/{id}/approve",
            {"comment": "a\x00b"},
            400,
            "form field comment holds a control",
        ),
        ("/approvals/{id}/approve", {"comment": "x" * 2001}, 400, "comment is 2001 characters"),
        ("/approvals/bad id!/approve", {}, 400, "path parameter id must be an approval id"),
        ("/approvals/0000-unknown/approve", {}, 404, "no approval request 0000-unknown"),
    ],
)
def test_a_bad_decision_form_is_a_4xx_naming_the_field_and_decides_nothing(
    app: App, target: str, form: dict[str, str], status: int, names: str
) -> None:
    _, request = waiting(app)
    with signed_in(app, "root") as client:
        csrf = csrf_of(client.get("/approvals").text)
        answer_ = client.post(target.format(id=request.id), data={"csrf": csrf, **form})
    assert answer_.status_code == status, answer_.text[:300]
    assert names in html.unescape(answer_.text)
    assert "Traceback" not in answer_.text
    assert app.store.approval(request.id).status == "pending"


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("/approvals?history=maybe", "query parameter history must be one of"),
        ("/approvals?history=approved&history=rejected", "history is given more than once"),
        ("/approvals?page=2", "unknown query parameter 'page'"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(app: App, target: str, names: str) -> None:
    with signed_in(app, "watcher") as client:
        answer_ = client.get(target)
    assert answer_.status_code == 400
    assert names in html.unescape(answer_.text)


def test_the_history_filter_shows_one_status(app: App) -> None:
    _, request = waiting(app)
    app.store.decide_approval(request.id, "root", False, "not now", START, via="test")
    with signed_in(app, "watcher") as client:
        rejected = html.unescape(client.get("/approvals?history=rejected").text)
        approved = html.unescape(client.get("/approvals?history=approved").text)
        everything = html.unescape(client.get("/approvals?history=").text)
    assert "not now" in rejected and "not now" in everything
    assert "not now" not in approved
    assert "No decided or timed-out request yet with status approved" in approved
