"""The agent loop on both databases, with scripted (offline) models.

Each test drives an agent to one of its ends (succeeded, max_steps, success_check_failed,
repeated_tool_call, timeout, budget_exceeded, provider_error) and checks what was recorded:
the run's state and error, its steps, and how often the model and the tools were called.
The durable tests crash a run between calls and show that the resumed run does not call the
model again for completed calls nor repeat completed tool calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from rota import Agent, AgentResult, App, Budget, RunFailed, RunState, ToolContext, tool
from rota.agents.models.retrying import RetryingModel
from rota.agents.types import Message, ModelRequest, ToolCall
from rota.errors import MissingApiKey, ProviderError, RunInterrupted, UnknownModel
from rota.testing import ScriptedModel, answer, call, get_scripted, say, scripted


class Decision(pydantic.BaseModel):
    approve: bool
    amount_cents: int


def _steps(app: App, run_id: str) -> list[tuple[str, str]]:
    return [(s.key, s.state) for s in app.store.steps(run_id)]


def _last_user_text(request: ModelRequest) -> str:
    return request.messages[-1].text


# -- answers -------------------------------------------------------------------------------


def test_invalid_structured_output_is_sent_back_and_the_corrected_answer_is_stored(
    app: App,
) -> None:
    model = ScriptedModel(
        "reviewer",
        script=[
            answer({"approve": "maybe", "amount_cents": 500}),
            say("```json\n" + '{"approve": true, "amount_cents": 500}' + "\n```"),
        ],
    )
    reviewer = Agent("reviewer", model, "Review the charge.", output=Decision)
    app.agent(reviewer)

    handle = app.run_now("reviewer", {"customer": "acme", "amount_cents": 500})
    app.drain()

    assert handle.result() == {"approve": True, "amount_cents": 500}
    assert model.calls == 2
    feedback = _last_user_text(model.requests[1])
    assert "does not match the required output schema" in feedback
    assert "approve: Input should be a valid boolean" in feedback
    assert model.requests[0].output_schema == Decision.model_json_schema()
    assert '"customer": "acme"' in model.requests[0].messages[0].text
    run = handle.get()
    assert run.kind == "agent"
    assert _steps(app, handle.id) == [("model#1", "SUCCEEDED"), ("model#2", "SUCCEEDED")]
    first = app.store.steps(handle.id)[0].result
    assert first["simulated"] is True and first["provider"] == "scripted"


def test_success_check_failure_is_explained_to_the_model_which_tries_again(app: App) -> None:
    def non_negative(decision: Decision) -> bool:
        if decision.amount_cents < 0:
            raise ValueError(f"amount_cents must be >= 0, got {decision.amount_cents}")
        return True

    model = ScriptedModel(
        "refunds",
        script=[
            answer(Decision(approve=True, amount_cents=-500)),
            answer(Decision(approve=True, amount_cents=500)),
        ],
    )
    app.agent(Agent("refunds", model, "Decide.", output=Decision, success=non_negative))

    handle = app.run_now("refunds", "refund acme")
    app.drain()

    assert handle.result() == {"approve": True, "amount_cents": 500}
    assert "amount_cents must be >= 0, got -500" in _last_user_text(model.requests[1])


def test_success_check_that_never_passes_ends_with_success_check_failed(app: App) -> None:
    model = ScriptedModel(
        "stubborn", fn=lambda request, turn: answer({"approve": True, "amount_cents": -1})
    )
    stubborn = Agent(
        "stubborn",
        model,
        "Decide.",
        output=Decision,
        success=lambda d: d.amount_cents >= 0,
        max_steps=3,
    )
    app.agent(stubborn)

    handle = app.run_now("stubborn", "go")
    app.drain()

    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.error["type"] == "AgentFailed"
    assert "stopped: success_check_failed" in run.error["message"]
    assert "the success check returned False" in run.error["message"]
    assert model.calls == 3
    assert [k for k, _ in _steps(app, handle.id)] == ["model#1", "model#2", "model#3"]

    direct = asyncio.run(stubborn.run("go"))
    assert (direct.reason, direct.output, direct.steps) == ("success_check_failed", None, 3)


# -- tools ---------------------------------------------------------------------------------


def test_a_tool_that_raises_is_reported_to_the_model_and_the_run_goes_on(app: App) -> None:
    @tool
    def charge(customer_id: str, amount_cents: int) -> str:
        """Charge a customer."""
        raise ConnectionError(f"payment gateway unreachable for {customer_id}")

    model = ScriptedModel(
        "charger",
        script=[call(charge, customer_id="acme", amount_cents=500), say("could not charge")],
    )
    app.agent(Agent("charger", model, "Charge.", tools=[charge]))

    handle = app.run_now("charger", "charge acme")
    app.drain()

    assert handle.result() == "could not charge"
    (result,) = model.requests[1].messages[-1].tool_results
    assert result.is_error
    assert "tool 'charge' failed: ConnectionError: payment gateway unreachable for acme" in (
        result.content
    )
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert list(steps) == ["model#1", "tool:charge", "model#2"]
    assert steps["tool:charge"].state == "SUCCEEDED"  # recorded: not run again on resume
    assert steps["tool:charge"].result["is_error"] is True


def test_invalid_tool_arguments_are_sent_back_without_calling_the_tool() -> None:
    calls: list[int] = []

    @tool
    def refund(amount_cents: int) -> str:
        calls.append(amount_cents)
        return "refunded"

    model = ScriptedModel(
        "refunder",
        script=[call("refund", amount_cents="lots"), call("refund", amount_cents=5), say("done")],
    )
    result = asyncio.run(Agent("refunder", model, "Refund.", tools=[refund]).run("go"))

    assert result.reason == "succeeded" and calls == [5]
    (first,) = model.requests[1].messages[-1].tool_results
    assert first.is_error and "amount_cents: Input should be a valid integer" in first.content


def test_an_unknown_tool_name_gets_an_error_result_and_counts_as_a_step(app: App) -> None:
    @tool
    def lookup(customer_id: str) -> dict[str, str]:
        return {"id": customer_id}

    model = ScriptedModel(
        "guesser",
        script=[call("delete_everything", confirm=True), call(lookup, customer_id="a"), say("ok")],
    )
    app.agent(Agent("guesser", model, "Look up.", tools=[lookup]))

    handle = app.run_now("guesser", "go")
    app.drain()

    assert handle.result() == "ok"
    (unknown,) = model.requests[1].messages[-1].tool_results
    assert unknown.is_error
    assert unknown.content == (
        "unknown tool 'delete_everything'; the tools you can call are: lookup"
    )
    assert [k for k, _ in _steps(app, handle.id)] == [
        "model#1",
        "model#2",
        "tool:lookup",
        "model#3",
    ]


def test_tools_get_deps_the_principal_and_their_step_idempotency_key(app: App) -> None:
    seen: list[tuple[Any, str | None, str | None, str]] = []

    @tool
    async def notify(ctx: ToolContext[dict[str, str]], channel: str) -> str:
        seen.append((ctx.deps, ctx.principal, ctx.run_id, ctx.idempotency_key))
        return f"sent to {channel}"

    model = ScriptedModel("notifier", script=[call(notify, channel="#ops"), say("sent")])
    notifier = Agent("notifier", model, "Notify.", tools=[notify], run_as="svc-ops")
    app.principal("svc-ops")
    app.agent(notifier, deps={"env": "test"})

    handle = app.run_now("notifier", "go")
    app.drain()

    assert handle.result() == "sent"
    assert seen == [({"env": "test"}, "svc-ops", handle.id, f"{handle.id}:tool:notify")]
    assert handle.get().principal == "svc-ops"


# -- protections ---------------------------------------------------------------------------


def test_max_steps_ends_a_run_that_never_answers(app: App) -> None:
    @tool
    def search(query: str) -> list[str]:
        return []

    model = ScriptedModel("searcher", fn=lambda request, turn: call(search, query=f"try {turn}"))
    app.agent(Agent("searcher", model, "Search.", tools=[search], max_steps=4))

    handle = app.run_now("searcher", "find it")
    app.drain()

    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.error["type"] == "AgentFailed"
    assert (
        "agent 'searcher' stopped: max_steps: no accepted answer after 4 model calls"
        in (run.error["message"])
    )
    assert model.calls == 4
    assert len([s for s in app.store.steps(handle.id) if s.key.startswith("tool:")]) == 4


def test_the_same_tool_call_three_times_in_a_row_stops_the_run(app: App) -> None:
    executed: list[str] = []

    @tool
    def status(job_id: str) -> str:
        executed.append(job_id)
        return "pending"

    model = ScriptedModel("poller", fn=lambda request, turn: call(status, job_id="j1"))
    app.agent(Agent("poller", model, "Wait for the job.", tools=[status], max_steps=10))

    handle = app.run_now("poller", "go")
    app.drain()

    with pytest.raises(RunFailed, match="repeated_tool_call: the model called status with"):
        handle.result()
    assert executed == ["j1", "j1"]  # the third identical call is refused, not run
    assert model.calls == 3


def test_a_provider_that_keeps_failing_fails_the_run_with_a_recorded_error(app: App) -> None:
    down = ProviderError("scripted", "overloaded (529)", status=529, retryable=True)
    model = ScriptedModel("down", script=[down])
    app.agent(Agent("outage", model, "Work."), retries=1, retry_backoff=0)

    handle = app.run_now("outage", "go")
    stats = app.drain()

    run = handle.get()
    assert (run.state, run.attempt, stats.failed) == (RunState.FAILED, 2, 1)
    assert run.error["type"] == "AgentFailed"
    assert "stopped: provider_error: scripted: overloaded (529)" in run.error["message"]
    assert model.calls == 2  # once per attempt: a failed call is not a checkpoint
    (step,) = app.store.steps(handle.id)
    assert (step.key, step.state, step.error["type"]) == ("model#1", "FAILED", "ProviderError")


def test_wall_clock_timeout() -> None:
    model = ScriptedModel("slow", script=[say("late")], latency=30)
    slow = Agent("slow", model, "Hurry.", timeout="50ms")

    result = asyncio.run(slow.run("go"))

    assert (result.reason, result.steps, result.output) == ("timeout", 1, None)
    assert result.error == "no accepted answer within 0.05s"


def test_budget_of_requests_and_tokens_fails_closed_before_the_call() -> None:
    @tool
    def step(n: int) -> int:
        return n

    script = [call(step, n=1), call(step, n=2), say("done")]
    by_requests = ScriptedModel("r", script=script)
    result = asyncio.run(
        Agent("r", by_requests, "Go.", tools=[step], budget=Budget(requests=2)).run("go")
    )
    assert (result.reason, by_requests.calls) == ("budget_exceeded", 2)
    assert result.error == "the budget allows 2 model requests and 2 were made"

    by_tokens = ScriptedModel("t", script=script, tokens=(400, 50))
    agent = Agent("t", by_tokens, "Go.", tools=[step], max_tokens=500, budget=Budget(tokens=1200))
    result = asyncio.run(agent.run("go"))
    # Call 1's worst case (a short prompt + 500) fits; after it 450 are used, and call 2's
    # worst case (a prompt of at least 450 + the new tool result, + 500) does not fit.
    assert (result.reason, by_tokens.calls, result.usage.input_tokens) == (
        "budget_exceeded",
        1,
        400,
    )
    assert "max_tokens 500" in (result.error or "")


# -- durability ----------------------------------------------------------------------------


def test_a_crash_after_the_second_model_call_resumes_without_repeating_completed_calls(
    app: App,
) -> None:
    charged: list[str] = []
    notified: list[str] = []
    crash = {"pending": True}

    @tool
    async def charge(ctx: ToolContext, customer_id: str) -> str:
        charged.append(ctx.idempotency_key)
        return f"charged {customer_id}"

    @tool
    async def notify(ctx: ToolContext, channel: str) -> str:
        notified.append(ctx.idempotency_key)
        if crash["pending"]:  # the worker dies in the middle of this call
            crash["pending"] = False
            raise RunInterrupted("lease_lost")
        return f"told {channel}"

    turns: list[int] = []

    def reply(request: ModelRequest, turn: int) -> Any:
        turns.append(turn)
        return [
            call(charge, customer_id="acme"),
            call(notify, channel="#billing"),
            answer({"approve": True, "amount_cents": 500}),
        ][turn - 1]

    model = ScriptedModel("billing", fn=reply)
    app.agent(Agent("billing", model, "Bill.", tools=[charge, notify], output=Decision))

    handle = app.run_now("billing", "bill acme")
    app.drain(lease_s=0.3, poll_interval_s=0.02)

    assert handle.result() == {"approve": True, "amount_cents": 500}
    assert turns == [1, 2, 3]  # model#1 and model#2 came from checkpoints on resume
    assert charged == [f"{handle.id}:tool:charge"]  # completed: not repeated
    # interrupted: run again (at-least-once), with the same idempotency key
    assert notified == [f"{handle.id}:tool:notify"] * 2
    run = handle.get()
    assert (run.attempt, run.reclaims) == (2, 1)
    assert _steps(app, handle.id) == [
        ("model#1", "SUCCEEDED"),
        ("tool:charge", "SUCCEEDED"),
        ("model#2", "SUCCEEDED"),
        ("tool:notify", "SUCCEEDED"),
        ("model#3", "SUCCEEDED"),
    ]


def test_a_failed_attempt_after_two_model_calls_is_retried_from_its_checkpoints(
    app: App,
) -> None:
    executed: list[str] = []
    crashes = {"left": 1}

    @tool
    def lookup(customer_id: str) -> str:
        executed.append(f"lookup {customer_id}")
        return "pro plan"

    @tool
    def charge(customer_id: str) -> str:
        executed.append(f"charge {customer_id}")
        return "charged"

    def reply(request: ModelRequest, turn: int) -> Any:
        if turn == 3 and crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the process running this call died")
        return [call(lookup, customer_id="acme"), call(charge, customer_id="acme"), say("done")][
            turn - 1
        ]

    model = ScriptedModel("retrier", fn=reply)
    app.agent(Agent("retrier", model, "Bill.", tools=[lookup, charge]), retries=1, retry_backoff=0)

    handle = app.run_now("retrier", "bill acme")
    app.drain()

    assert handle.result() == "done"
    assert model.calls == 4  # turns 1, 2, 3 (failed), 3 -- never 1 or 2 again
    assert [r.messages[-1].tool_results[0].content for r in model.requests[2:]] == ["charged"] * 2
    assert executed == ["lookup acme", "charge acme"]
    run = handle.get()
    assert (run.attempt, run.failures) == (2, 1)
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert (steps["model#3"].state, steps["model#3"].attempts) == ("SUCCEEDED", 2)
    assert all(steps[k].attempts == 1 for k in ("model#1", "tool:lookup", "model#2", "tool:charge"))


def test_ctx_agent_runs_an_agent_inside_a_workflow_durably(app: App) -> None:
    model = ScriptedModel(
        "triage", fn=lambda request, turn: answer({"approve": True, "amount_cents": 1})
    )
    triage = Agent("triage", model, "Triage.", output=Decision)

    @app.workflow(retries=1, retry_backoff=0)
    async def review(ctx, payload):
        first = await ctx.agent(triage, payload)
        second = await ctx.agent(triage, {"again": payload})
        if ctx.attempt == 1:
            raise RuntimeError("crash after both agents answered")
        assert isinstance(first, AgentResult) and first.simulated
        return [first.output_json, second.output.amount_cents, second.reason]

    handle = app.run_now("review", {"id": 7})
    app.drain()

    assert handle.result() == [{"approve": True, "amount_cents": 1}, 1, "succeeded"]
    assert model.calls == 2  # not called again on the retry
    assert [k for k, _ in _steps(app, handle.id)] == [
        "agent:triage/model#1",
        "agent:triage#2/model#1",
    ]


# -- definitions ---------------------------------------------------------------------------


def test_model_strings_resolve_at_definition_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted("demo", script=[say("hello")]) as model:
        agent = Agent("greeter", "scripted:demo", "Greet.")
        assert agent.model is model
        result = agent.run_sync("hi")
        assert (result.output, result.simulated, result.usage.requests) == ("hello", True, 1)

    with pytest.raises(UnknownModel, match=r"no scripted model named 'nope' \(registered: "):
        Agent("x", "scripted:nope", "...")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingApiKey, match="set ANTHROPIC_API_KEY"):
        Agent("x", "anthropic:claude-sonnet-4-5", "...")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    real = Agent("x", "anthropic:claude-sonnet-4-5", "...")
    assert isinstance(real.model, RetryingModel)  # real providers get retries; scripted do not
    assert (real.model_spec, real.model.name) == (
        "anthropic:claude-sonnet-4-5",
        "claude-sonnet-4-5",
    )


# -- the scripted model --------------------------------------------------------------------


def test_scripted_responses_are_labelled_simulated_and_deterministic() -> None:
    def make() -> ScriptedModel:
        return ScriptedModel(
            "det", script=[call("lookup", id=1) + say("checking")], latency=(0, 0.001)
        )

    request = ModelRequest(model="det", system="Be brief.", messages=(Message("user", "hi"),))
    one, two = (asyncio.run(make().complete(request)) for _ in range(2))
    assert one.simulated and one.provider == "scripted" and one.stop_reason == "tool_use"
    assert (one.text, one.tool_calls) == ("checking", (ToolCall("call_1_1", "lookup", {"id": 1}),))
    assert one.usage == two.usage and one.usage.input_tokens > 0 and one.usage.output_tokens > 0
    assert one.extra["latency_s"] == two.extra["latency_s"]  # seeded by the model's name


def test_an_exhausted_script_ends_the_run_with_a_clear_provider_error() -> None:
    model = ScriptedModel("short", script=[call("nothing")])
    result = asyncio.run(Agent("short", model, "Go.").run("go"))
    assert (result.reason, result.steps, result.output) == ("provider_error", 2, None)
    assert result.error == (
        "scripted: model 'short' has no reply for turn 2: its script has 1; add replies or "
        "end with say()/answer()"
    )


def test_unknown_scripted_names_list_the_registered_ones() -> None:
    with scripted("alpha", script=[say("a")]), scripted("beta", script=[say("b")]):
        with pytest.raises(UnknownModel, match=r"no scripted model named 'gamma'") as raised:
            get_scripted("gamma")
        # Other modules (examples, the demo) register models of their own for the session,
        # so the list holds ours among theirs, sorted.
        listed = str(raised.value).split("registered: ", 1)[1].split(")", 1)[0].split(", ")
        assert {"alpha", "beta"} <= set(listed) and listed == sorted(listed)
        assert get_scripted("beta").name == "beta"
    with pytest.raises(UnknownModel, match="no scripted model named 'alpha'"):
        get_scripted("alpha")
