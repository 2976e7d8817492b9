"""Principals, scopes and roles as values: the grammar, wildcards, and the tool access rule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rota import tool
from rota.agents.permissions import DENIED_CALLS, ToolAccess
from rota.agents.tools import ToolContext, ToolDenied
from rota.errors import ConfigError
from rota.identity.principals import Principal, make_principal


def test_scopes_are_held_exactly_or_by_a_trailing_wildcard() -> None:
    p = make_principal("svc-billing", scopes=["billing:read", "refunds:*"])
    assert p.holds("billing:read")
    assert not p.holds("billing:write")
    assert p.holds("refunds:small") and p.holds("refunds:large:eu")
    assert not p.holds("refundsx:small")  # the wildcard covers its prefix's words only
    assert p.missing(["billing:read", "billing:write", "refunds:x"]) == ("billing:write",)


@pytest.mark.parametrize(
    ("scope", "ok"),
    [
        ("billing:read", True),
        ("billing", True),
        ("billing:*", True),
        ("a.b-c_d:e", True),
        ("Billing:read", False),
        ("billing read", False),
        ("billing:", False),
        (":read", False),
        ("*", False),
        ("billing:*:x", False),
        ("", False),
    ],
)
def test_scope_grammar(scope: str, ok: bool) -> None:
    if ok:
        make_principal("p", scopes=[scope])
        return
    with pytest.raises(ConfigError, match=r"malformed scope .*lower-case words joined by ':'"):
        make_principal("p", scopes=[scope])


def test_a_single_string_of_scopes_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"scopes must be a list, e.g. scopes=\['billing:read'\]"):
        make_principal("p", scopes="billing:read")


@pytest.mark.parametrize("role", ["admin", "operator", "viewer", "approver:finance"])
def test_known_roles(role: str) -> None:
    assert role in make_principal("p", roles=[role]).roles


@pytest.mark.parametrize("role", ["root", "approver:", "approver:Finance", "Admin"])
def test_unknown_roles_are_refused(role: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown role .*admin, operator, viewer or approver"):
        make_principal("p", roles=[role])


@pytest.mark.parametrize("name", ["", "-svc", "svc billing", "x" * 101, "svc/billing"])
def test_bad_principal_names(name: str) -> None:
    with pytest.raises(ConfigError, match="principal name"):
        make_principal(name)


def test_kind_must_be_user_or_service() -> None:
    with pytest.raises(ConfigError, match="'user' \\(a person\\) or 'service'"):
        make_principal("p", kind="robot")
    assert make_principal("alice", kind="user").actor_kind == "human"
    assert make_principal("svc").actor_kind == "machine"


def _context(principal: str | None) -> ToolContext[None]:
    return ToolContext(None, "run-1", principal, "run-1:tool:refund", "agent", "refund", "c1")


def test_tool_access_hides_and_refuses_tools_whose_scopes_are_not_held() -> None:
    ran: list[int] = []

    @tool(scopes=["billing:write"])
    def refund(amount_cents: int) -> str:
        ran.append(amount_cents)
        return "ok"

    @tool
    def lookup(customer: str) -> str:
        return customer

    reader = make_principal("svc-reader", scopes=["billing:read"])
    access = ToolAccess("agent", lambda: reader)
    assert list(access.visible({"refund": refund, "lookup": lookup})) == ["lookup"]
    before = DENIED_CALLS.labels("agent", "refund")._value.get()
    with pytest.raises(ToolDenied, match="lacks the scope billing:write that tool 'refund'"):
        asyncio.run(access.check(refund, {"amount_cents": 5}, _context("svc-reader")))
    assert DENIED_CALLS.labels("agent", "refund")._value.get() == before + 1
    assert ran == []

    writer = make_principal("svc-writer", scopes=["billing:*"])
    assert list(ToolAccess("agent", lambda: writer).visible({"refund": refund})) == ["refund"]


def test_a_disabled_or_missing_principal_holds_no_scope() -> None:
    @tool(scopes=["billing:read"])
    def read(customer: str) -> str:
        return customer

    disabled = Principal("p", scopes=frozenset({"billing:read"}), disabled=True)
    tools: dict[str, Any] = {"read": read}
    assert ToolAccess("a", lambda: disabled).visible(tools) == {}
    assert ToolAccess("a", lambda: None).visible(tools) == {}
