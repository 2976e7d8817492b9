"""Work left out of each model call and step when its result is known (issue 18, second
pass): the same requests and fingerprints as before."""

from __future__ import annotations

import asyncio

from rota import tool
from rota.agentloop.request import PermittedTools
from rota.agents.permissions import ToolAccess
from rota.agents.types import Message, ModelRequest, ModelResponse, Usage
from rota.durable import _NO_INPUTS
from rota.identity.principals import make_principal
from rota.serialization import fingerprint


@tool
def lookup(customer: str) -> str:
    """Look a customer up."""
    return customer


@tool(scopes=["billing:write"])
def refund(amount_cents: int) -> str:
    """Refund an amount."""
    return "ok"


class Recorder:
    provider, name = "scripted", "recorder"

    def __init__(self) -> None:
        self.seen: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.seen.append(request)
        return ModelResponse("done", (), "end_turn", Usage(), "recorder", "scripted")


def _request(*tools: object) -> ModelRequest:
    specs = tuple(t.spec for t in tools)  # type: ignore[attr-defined]
    return ModelRequest("m", "system", (Message("user", "hi"),), tools=specs)


def test_permitted_tools_passes_the_request_on_as_it_is_when_every_tool_is_visible() -> None:
    inner = Recorder()
    writer = make_principal("writer", scopes=["billing:write"])
    tools = {"lookup": lookup, "refund": refund}
    request = _request(lookup, refund)
    asyncio.run(PermittedTools(inner, ToolAccess("a", lambda: writer), tools).complete(request))
    assert inner.seen == [request] and inner.seen[0] is request


def test_permitted_tools_still_hides_the_tools_a_principal_may_not_call() -> None:
    inner = Recorder()
    reader = make_principal("reader", scopes=["billing:read"])
    tools = {"lookup": lookup, "refund": refund}
    asyncio.run(
        PermittedTools(inner, ToolAccess("a", lambda: reader), tools).complete(
            _request(lookup, refund)
        )
    )
    assert [t.name for t in inner.seen[0].tools] == ["lookup"]


def test_a_step_without_inputs_has_the_fingerprint_of_no_inputs() -> None:
    assert fingerprint((), {}) == _NO_INPUTS
