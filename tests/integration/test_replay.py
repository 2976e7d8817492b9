"""Record and replay on both databases: an agent run recorded as a job is replayed against
its recorded model responses with the current code, with zero calls to the model, and the
first step where the new code path diverges is reported."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner, Result

from rota import Agent, App, RunState, ToolContext, tool
from rota.agentloop.replay import NotReplayable, recorded_requests, replay_run
from rota.cli import app as cli
from rota.errors import RunNotFound
from rota.testing import ScriptedModel, answer, call


class Decision(pydantic.BaseModel):
    approve: bool
    plan: str


SCRIPT = [call("lookup", customer_id="acme"), answer(Decision(approve=True, plan="gold"))]


def make_agent(
    plan: str,
    seen: list[tuple[str | None, str]] | None = None,
    output: Any = Decision,
    **options: Any,
) -> tuple[Agent, ScriptedModel]:
    """The agent under test; `plan` is what its lookup tool returns (the code that changes)."""

    @tool
    def lookup(ctx: ToolContext, customer_id: str) -> str:
        """Look up a customer's plan."""
        if seen is not None:
            seen.append((ctx.run_id, ctx.idempotency_key))
        return plan

    model = ScriptedModel("replay", script=SCRIPT)
    agent = Agent(
        "reviewer", model, "Decide on the upgrade.", tools=[lookup], output=output, **options
    )
    return agent, model


def record(database_url: str) -> tuple[str, ScriptedModel]:
    app = App(database_url)
    agent, model = make_agent("gold")
    app.agent(agent)
    handle = app.run_now("reviewer", {"customer": "acme"})
    app.drain()
    assert handle.result() == {"approve": True, "plan": "gold"}
    assert model.calls == 2
    app.close()
    return handle.id, model


def replaying_app(database_url: str, agent: Agent) -> App:
    app = App(database_url)
    app.agent(agent)
    return app


def test_each_model_step_stores_its_normalised_request(database_url: str) -> None:
    run_id, model = record(database_url)
    app = App(database_url)
    steps = app.store.steps(run_id)
    first = steps[0].result
    assert first["request"]["system"] == "Decide on the upgrade."
    assert first["request"]["output_schema"] == Decision.model_json_schema()
    assert [t["name"] for t in first["request"]["tools"]] == ["lookup"]
    second = next(s for s in steps if s.key == "model#2").result["request"]
    # only what was added since model#1: its reply and the tool result
    assert second["messages_from"] == 1
    assert [m["role"] for m in second["messages"]] == ["assistant", "user"]
    assert second["messages"][1]["tool_results"][0]["content"] == "gold"
    rebuilt = recorded_requests(steps)
    assert rebuilt["model#1"] == model.requests[0]
    assert rebuilt["model#2"] == model.requests[1]
    app.close()


def test_replay_with_the_same_code_is_identical_and_calls_no_model(database_url: str) -> None:
    run_id, recorder = record(database_url)
    seen: list[tuple[str | None, str]] = []
    agent, model = make_agent("gold", seen)
    app = replaying_app(database_url, agent)

    report = replay_run(app, run_id)

    assert report.identical, report.lines()
    assert report.first_divergence is None
    assert (report.steps_compared, report.recorded_steps, report.provider_calls) == (2, 2, 0)
    assert report.result == report.recorded_result == {"approve": True, "plan": "gold"}
    assert report.error is None and report.recorded_error is None
    assert model.calls == 0 and recorder.calls == 2  # no model was asked anything
    # the tool ran again, under the recorded run's id and step idempotency key
    assert seen == [(run_id, f"{run_id}:tool:lookup")]
    assert report.lines()[0] == "replayed 2 model steps with 0 provider calls: identical"
    assert [s.key for s in app.store.steps(run_id)] == ["model#1", "tool:lookup", "model#2"]
    app.close()


def test_a_changed_tool_is_reported_at_the_first_model_step_that_sees_it(
    database_url: str,
) -> None:
    run_id, _ = record(database_url)
    agent, model = make_agent("silver")
    app = replaying_app(database_url, agent)

    report = replay_run(app, run_id)

    assert report.identical is False
    d = report.first_divergence
    assert d is not None
    assert (d.step, d.kind) == ("model#2", "request")
    assert "tool:lookup result differs: recorded 'gold' now 'silver'" in d.details
    assert report.steps_compared == 2 and model.calls == 0
    assert report.result is None  # replay stopped where the path diverged
    assert report.lines()[0] == "replayed 2 model steps with 0 provider calls: diverged at model#2"

    # with the recorded tool results, the changed tool is not run: identical again
    again = replay_run(app, run_id, recorded_tools=True)
    assert again.identical and again.result == {"approve": True, "plan": "gold"}
    app.close()


def test_changed_instructions_diverge_at_the_first_model_step(database_url: str) -> None:
    run_id, _ = record(database_url)
    agent, _ = make_agent("gold")
    agent.instructions = "Decide, briefly."
    app = replaying_app(database_url, agent)

    report = replay_run(app, run_id, recorded_tools=True)

    d = report.first_divergence
    assert d is not None and (d.step, d.kind) == ("model#1", "request")
    assert d.details == (
        "instructions (system prompt) differs: recorded 'Decide on the upgrade.' "
        "now 'Decide, briefly.'",
    )


def test_a_new_path_that_needs_another_model_call_is_unanswered(database_url: str) -> None:
    run_id, _ = record(database_url)

    def not_gold(decision: Decision) -> bool:
        raise ValueError("gold upgrades need a human")

    agent, model = make_agent("gold", success=not_gold)
    app = replaying_app(database_url, agent)

    report = replay_run(app, run_id)

    d = report.first_divergence
    assert d is not None and (d.step, d.kind) == ("model#3", "unanswered")
    assert "never answered" in d.summary
    assert any("gold upgrades need a human" in line for line in d.details)
    assert report.steps_compared == 2 and model.calls == 0


def test_a_changed_output_type_changes_the_result(database_url: str) -> None:
    run_id, _ = record(database_url)

    class Decision(pydantic.BaseModel):  # the same schema; a validator that changes the value
        approve: bool
        plan: str

        @pydantic.field_validator("plan")
        @classmethod
        def shout(cls, value: str) -> str:
            return value.upper()

    app = replaying_app(database_url, make_agent("gold", output=Decision)[0])

    report = replay_run(app, run_id)

    d = report.first_divergence
    assert d is not None and (d.step, d.kind) == ("result", "result")
    assert d.details == (
        'recorded: {"approve": true, "plan": "gold"}',
        'now:      {"approve": true, "plan": "GOLD"}',
    )
    assert report.steps_compared == 2
    assert report.result == {"approve": True, "plan": "GOLD"}
    assert report.recorded_result == {"approve": True, "plan": "gold"}


def test_a_run_recorded_before_requests_were_stored_compares_tool_results(
    database_url: str,
) -> None:
    run_id, _ = record(database_url)
    app = replaying_app(database_url, make_agent("silver")[0])
    with app.store.tx() as conn:  # rewrite the checkpoints as the previous version stored them
        for step in app.store.steps(run_id):
            if step.key.startswith("model#"):
                old = {k: v for k, v in step.result.items() if k != "request"}
                conn.execute(
                    "UPDATE rota_steps SET result = :r WHERE run_id = :id AND step_key = :k",
                    {"r": json.dumps(old), "id": run_id, "k": step.key},
                )

    report = replay_run(app, run_id)

    d = report.first_divergence
    assert d is not None and (d.step, d.kind) == ("tool:lookup", "tool")
    assert d.details == ("tool:lookup result differs: recorded 'gold' now 'silver'",)
    assert "recorded before model requests were stored" in report.notes[0]
    app.close()
    same = replaying_app(database_url, make_agent("gold")[0])
    assert replay_run(same, run_id).identical
    same.close()


def test_a_failed_run_replays_to_the_same_error(database_url: str) -> None:
    app = App(database_url)
    agent, model = make_agent("gold")
    model.script = SCRIPT[:1]  # the script runs out at model#2: a ProviderError
    app.agent(agent)
    handle = app.run_now("reviewer", "go")
    app.drain()
    assert handle.get().state == RunState.FAILED and model.calls == 2

    report = replay_run(app, handle.id)

    assert report.identical, report.lines()
    assert report.recorded_error == report.error
    assert (report.error or "").startswith("AgentFailed: agent 'reviewer' stopped: provider_error")
    assert report.result is None and model.calls == 2
    app.close()


def test_only_finished_agent_runs_of_registered_agents_replay(database_url: str) -> None:
    app = App(database_url)
    app.agent(make_agent("gold")[0])

    @app.job
    def plain(ctx: Any) -> int:
        return 1

    with pytest.raises(RunNotFound):
        replay_run(app, "no-such-run")
    queued = app.run_now("reviewer", "go")
    with pytest.raises(NotReplayable, match="ENQUEUED"):
        replay_run(app, queued.id)
    job = app.run_now("plain")
    app.drain()
    with pytest.raises(NotReplayable, match="only agent runs can be replayed"):
        replay_run(app, job.id)
    app.close()


# -- the CLI -------------------------------------------------------------------------------

APP = """
from rota import Agent, App, tool
from rota.testing import ScriptedModel, call, say

app = App()
model = ScriptedModel("replay-cli", script=[call("lookup", customer_id="acme"), say("done")])


@tool
def lookup(customer_id: str) -> str:
    \"\"\"Look up a customer's plan.\"\"\"
    return "PLAN"


app.agent(Agent("cli-reviewer", model, "Decide.", tools=[lookup]))


@app.job
def plain(ctx):
    return 1
"""


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("ROTA_APP", "replay_cli_app:app")
    write_app(tmp_path, "gold")
    yield tmp_path
    sys.modules.pop("replay_cli_app", None)


def write_app(directory: Path, plan: str) -> None:
    (directory / "replay_cli_app.py").write_text(textwrap.dedent(APP).replace("PLAN", plan))
    sys.modules.pop("replay_cli_app", None)
    importlib.invalidate_caches()


def rota(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_cli_replay_exit_codes(project: Path) -> None:
    import replay_cli_app  # the module the CLI loads too

    handle = replay_cli_app.app.run_now("cli-reviewer", "upgrade acme")
    plain = replay_cli_app.app.run_now("plain")
    replay_cli_app.app.drain()
    assert handle.result() == "done" and replay_cli_app.model.calls == 2

    same = rota("runs", "replay", handle.id)
    assert same.exit_code == 0, same.output
    assert "replayed 2 model steps with 0 provider calls: identical" in same.stdout
    assert replay_cli_app.model.calls == 2  # the CLI loaded this module: its model was not asked

    as_json = rota("runs", "replay", handle.id, "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["identical"], data["provider_calls"], data["result"]) == (True, 0, "done")

    write_app(project, "silver")
    changed = rota("runs", "replay", handle.id)
    assert changed.exit_code == 1, changed.output
    assert "diverged at model#2" in changed.stdout
    assert "tool:lookup result differs: recorded 'gold' now 'silver'" in changed.stdout
    recorded = rota("runs", "replay", handle.id, "--recorded-tools")
    assert recorded.exit_code == 0, recorded.output

    unknown = rota("runs", "replay", "no-such-run")
    assert unknown.exit_code == 3  # not found (docs/cli.md)
    assert "no run with id 'no-such-run'" in unknown.stderr
    not_agent = rota("runs", "replay", plain.id)
    assert not_agent.exit_code == 2
    assert "only agent runs can be replayed" in not_agent.stderr
