"""An agent that is unsure asks a human (ask_human): the run parks, the person's answer and
comment come back to the model as the tool's result."""

from __future__ import annotations

from typing import Any

import pytest

from rota import Agent, App, ask_human
from rota.agents.types import ModelRequest
from rota.model import RunState
from rota.testing import ScriptedModel, answer, call


@pytest.mark.parametrize("approve", [True, False])
def test_an_unsure_agent_asks_a_human_and_hears_the_answer(app: App, approve: bool) -> None:
    heard: list[str] = []

    def unsure(request: ModelRequest, turn: int) -> Any:
        if turn == 1:
            return call("ask_human", question="Refund or credit?", proposal="credit 500 cents")
        heard.append(request.messages[-1].tool_results[0].content)
        return answer({"decision": "credit" if approve else "refund"})

    app.principal("fin", kind="user", roles=["approver:finance"])
    agent = Agent(
        "unsure",
        ScriptedModel("unsure", fn=unsure),
        "Decide; ask a human when unsure.",
        tools=[ask_human("finance")],
        output=dict[str, Any],
    )
    app.agent(agent)
    handle = app.run_now("unsure", {"ticket": 1})
    app.drain()
    assert handle.get().state == RunState.WAITING
    [request] = app.store.approvals()
    assert request.approvers == ("finance",)
    assert "ask_human" in request.question and "credit 500 cents" in request.question
    app.store.decide_approval(
        request.id, "fin", approve, "credit is kinder", app.clock.now(), via="test"
    )
    app.drain()
    assert handle.get().state == RunState.SUCCEEDED
    expected = "approved by fin: credit is kinder" if approve else "rejected by fin: credit"
    assert (heard and heard[-1].startswith(expected)) or expected in heard[-1]
