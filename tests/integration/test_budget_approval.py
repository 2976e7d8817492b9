"""Budget(approvers=...): a run that would exceed its own budget parks for an operator, who
allows it as much again (the run goes on) or refuses (it ends budget_exceeded)."""

from __future__ import annotations

from typing import Any

import pytest

from rota import Agent, App, Budget
from rota.errors import ConfigError
from rota.model import RunState
from rota.testing import ScriptedModel, answer, say


def setup(app: App) -> ScriptedModel:
    app.principal("ops-lead", kind="user", roles=["approver:ops"])
    model = ScriptedModel("thrifty", script=[say("thinking"), say("still"), answer({"ok": 1})])
    agent = Agent(
        "thrifty",
        model,
        "Go.",
        output=dict[str, Any],
        budget=Budget(requests=2, approvers="ops", approval_timeout="1h"),
    )
    app.agent(agent)
    return model


def pending(app: App) -> Any:
    [request] = app.store.approvals()
    assert request.status == "pending"
    return request


@pytest.mark.parametrize("approve", [True, False])
def test_an_operator_decides_whether_a_run_may_spend_more(app: App, approve: bool) -> None:
    model = setup(app)
    handle = app.run_now("thrifty")
    app.drain()
    assert handle.get().state == RunState.WAITING
    assert model.calls == 2  # the third call would exceed requests=2: parked before it
    request = pending(app)
    assert "has used its budget: the budget allows 2 model requests" in request.question
    app.store.decide_approval(
        request.id, "ops-lead", approve, "end of quarter", app.clock.now(), via="test"
    )
    app.drain()
    run = handle.get()
    if approve:
        assert run.state == RunState.SUCCEEDED and run.result == {"ok": 1}
        assert model.calls == 3
    else:
        assert run.state == RunState.FAILED and model.calls == 2
        assert "budget_exceeded" in run.error["message"]


def test_budget_approvers_must_be_valid_groups() -> None:
    with pytest.raises(ConfigError, match="approver group 'Ops Team' is not a valid group name"):
        Budget(requests=2, approvers="Ops Team")
