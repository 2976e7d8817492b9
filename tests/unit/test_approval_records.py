"""Approval records without a database: who may decide, refusal texts, the chat message."""

from __future__ import annotations

import json

import pytest

from rota.approvals.notify import ApprovalWebhook, message
from rota.errors import ConfigError
from rota.identity.principals import Principal, approver_groups
from rota.storage.approval_records import (
    ApprovalDecision,
    ApprovalRequest,
    check_comment,
    may_decide,
    refusal_text,
)


def request(**fields: object) -> ApprovalRequest:
    base: dict[str, object] = {
        "id": "ap1",
        "run_id": "run1",
        "step_key": "approval",
        "run_name": "refund",
        "principal": None,
        "question": "Refund $500 to acme?",
        "context": {"amount_cents": 50_000},
        "approvers": ("finance",),
        "on_timeout": "reject",
        "status": "pending",
        "created_at": 1_700_000_000.0,
        "deadline": 1_700_014_400.0,
    }
    return ApprovalRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_who_may_decide() -> None:
    alice = Principal("alice", "user", roles=frozenset({"approver:finance"}))
    root = Principal("root", "user", roles=frozenset({"admin"}))
    legal = Principal("lee", "user", roles=frozenset({"approver:legal"}))
    assert may_decide(alice, ["finance", "ops"]) and may_decide(root, ["finance"])
    assert may_decide(root, []) and not may_decide(alice, [])  # no group: admins only
    assert not may_decide(legal, ["finance"]) and not may_decide(None, ["finance"])
    assert not may_decide(Principal("alice", "user", alice.scopes, alice.roles, True), ["finance"])


def test_groups_and_comments_are_checked() -> None:
    assert approver_groups("finance", what="x") == ("finance",)
    assert approver_groups(["ops", "finance", "ops"], what="x") == ("ops", "finance")
    assert approver_groups(None, what="x") == ()
    with pytest.raises(ConfigError, match="approver group 'Fin Ops' is not a valid group"):
        approver_groups(["Fin Ops"], what="x")
    assert check_comment("  ") is None and check_comment(" ok ") == "ok"
    with pytest.raises(ConfigError, match="keep it under 2000"):
        check_comment("x" * 2001)


def test_refusals_name_the_state() -> None:
    decided = request(status="approved", decided_by="alice", decided_at=1_700_000_060.0)
    assert refusal_text(decided).startswith("approval ap1 was already approved by alice at ")
    assert "timed out" in refusal_text(request(status="timed_out", decided_at=1.0))
    assert "expired" in refusal_text(request(status="expired"))


def test_a_decision_is_truthy_only_when_approved() -> None:
    assert ApprovalDecision(True, "approved", "ap1")
    assert not ApprovalDecision(False, "rejected", "ap1")
    late = ApprovalDecision(True, "timed_out", "ap1")
    assert late and late.timed_out


def test_the_chat_message_is_a_slack_body_within_its_limits() -> None:
    body = message(request(question="Why? " * 1000, context={"blob": "y" * 10_000}))
    assert len(body["text"]) < 500
    for block in body["blocks"]:
        texts = [block.get("text", {}), *block.get("fields", []), *block.get("elements", [])]
        assert all(len(t.get("text", "")) <= 3000 for t in texts)
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Approval needed"},
    }
    assert "rota approvals approve ap1" in json.dumps(body)
    assert "approver:finance (or admins)" in json.dumps(body)


def test_a_webhook_needs_an_http_url() -> None:
    with pytest.raises(ConfigError, match="must be an http"):
        ApprovalWebhook("ftp://example.com")
    with pytest.raises(ConfigError, match="retries must be a whole number"):
        ApprovalWebhook("https://example.com", retries=-1)
