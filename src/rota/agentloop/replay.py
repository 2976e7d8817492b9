"""Record and replay: run a recorded agent run again, against its recorded model responses.

Every model step of an agent run stores the model's response and the normalised request
that was sent (see `rota.agentloop.loop`). `replay_run(app, run_id)` runs the agent again with
the *current* code, in memory, with a `ReplayModel` in place of the real one: the n-th model
call gets the n-th recorded response and no provider is ever called. At each model step the
request the new code would send is compared with the recorded one; the first difference is
where the new code path diverges ("the model would be asked something else"), and it is
reported with what differed, e.g. `tool:lookup result differs: recorded 'gold' now 'silver'`.
A new path that needs more model calls than were recorded, or fewer, or that ends with
another result, diverges too. Replay stops at the first divergence: the recorded responses
after it answer questions the new code no longer asks.

Tools run for real with the current code (the point is "my code changed"), under the recorded
run's id, principal and step idempotency keys, so an idempotent side-effecting tool is
de-duplicated downstream exactly as on a resume. `recorded_tools=True` returns the recorded
tool results instead and runs no tool.

Scope: runs of agents registered as jobs (`app.agent(...)`). Agents run inside a workflow
(`ctx.agent`) are steps of that workflow and are not replayed on their own.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Literal, Protocol

from .. import serialization
from ..agents.types import (
    ModelRequest,
    ModelResponse,
    ToolSpec,
    message_from_json,
    response_from_json,
)
from ..calls import call_user
from ..clock import Clock, system_clock
from ..context import RunContext
from ..durations import Duration, optional_seconds
from ..errors import AgentFailed, ConfigError, ProviderError, StepFailed
from ..jobs import Registry
from ..model import Run, RunState, Step
from ..runtime import StepInfo, step_scope
from ..storage.audit import AuditEntry
from ..storage.base import Store
from .agent import Agent, AgentResult
from .steps import request_record

_MODEL_STEP = re.compile(r"model#(\d+)")

DivergenceKind = Literal["request", "unanswered", "fewer_calls", "tool", "result"]


class ReplaySource(Registry, Protocol):
    """Where replay_run finds a recorded run and its agent: an App (its definitions, store
    and clock)."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...


class NotReplayable(ConfigError):
    """The run cannot be replayed (not an agent run, not finished, agent not registered)."""


@dataclass(frozen=True)
class Divergence:
    """Where the new code path leaves the recorded one.

    `kind`: "request" (the model would be sent another request), "unanswered" (the new code
    needs a model call the recording does not have), "fewer_calls" (it ends before making
    all the recorded calls), "tool" (a tool result differs and no later model request shows
    it: the run ended, or it was recorded before requests were stored), "result" (the final
    result or error differs). `recorded` and `replayed` are the differing JSON.
    """

    step: str
    kind: DivergenceKind
    summary: str
    details: tuple[str, ...] = ()
    recorded: Any = None
    replayed: Any = None


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of a replay. `identical` is True when every model request, the number of
    model calls and the final result match the recording. `result`/`error` are the new
    outcome (the agent's JSON output, or "Type: message" of the failure), `recorded_result`/
    `recorded_error` the recorded one; both are None when replay stopped at a divergence
    before the end. `steps_compared` counts the model steps replayed from the recording.
    `provider_calls` is always 0: the real model is never called."""

    run_id: str
    agent: str
    identical: bool
    first_divergence: Divergence | None
    steps_compared: int
    recorded_steps: int
    result: Any
    recorded_result: Any
    error: str | None
    recorded_error: str | None
    recorded_tools: bool
    provider_calls: int = 0
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = self.first_divergence
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "identical": self.identical,
            "steps_compared": self.steps_compared,
            "recorded_steps": self.recorded_steps,
            "provider_calls": self.provider_calls,
            "recorded_tools": self.recorded_tools,
            "first_divergence": None
            if d is None
            else {
                "step": d.step,
                "kind": d.kind,
                "summary": d.summary,
                "details": list(d.details),
                "recorded": d.recorded,
                "replayed": d.replayed,
            },
            "result": self.result,
            "recorded_result": self.recorded_result,
            "error": self.error,
            "recorded_error": self.recorded_error,
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The report as text, for the CLI."""
        head = (
            f"replayed {self.steps_compared} model steps with {self.provider_calls} "
            f"provider calls: "
        )
        d = self.first_divergence
        lines = [head + ("identical" if d is None else f"diverged at {d.step}")]
        if d is not None:
            lines.append(d.summary)
            lines += [f"  {line}" for line in d.details]
        lines.append(
            "tools returned their recorded results"
            if self.recorded_tools
            else "tools ran with the current code"
        )
        lines += list(self.notes)
        return lines


class ReplayModel:
    """A Model that answers from a recording: the n-th call gets the n-th recorded response
    (or raises the recorded provider error). A call beyond the recording raises
    `Unanswered`; nothing here can reach a provider."""

    def __init__(
        self, provider: str, name: str, answers: Sequence[ModelResponse | BaseException]
    ) -> None:
        self.provider = provider
        self.name = name  # the recorded model's name, so that requests compare equal
        self.answers = list(answers)
        self.calls = 0
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.requests.append(request)
        if self.calls > len(self.answers):
            raise Unanswered(request)
        answer = self.answers[self.calls - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class _ReplayStop(Exception):
    """Control flow of the replay; passes through the loop untouched."""


class Unanswered(_ReplayStop):
    def __init__(self, request: ModelRequest) -> None:
        self.request = request
        super().__init__("the recording has no response for this model call")


class _Diverged(_ReplayStop):
    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence
        super().__init__(divergence.summary)


# -- recordings ----------------------------------------------------------------------------


def recorded_requests(steps: Sequence[Step], prefix: str = "") -> dict[str, ModelRequest]:
    """The full request of each recorded model step (`{"model#1": ModelRequest, ...}`),
    rebuilt from the messages each step stored. Steps recorded before requests were stored
    are left out."""
    requests: dict[str, ModelRequest] = {}
    messages: list[dict[str, Any]] = []
    for step in steps:
        if not step.key.startswith(prefix) or not _MODEL_STEP.fullmatch(step.key[len(prefix) :]):
            continue
        record = step.result.get("request") if isinstance(step.result, dict) else None
        if record is None:
            continue
        messages = messages[: record["messages_from"]] + list(record["messages"])
        requests[step.key] = ModelRequest(
            model=record["model"],
            system=record["system"],
            messages=tuple(message_from_json(m) for m in messages),
            tools=tuple(ToolSpec(**t) for t in record["tools"]),
            max_tokens=record["max_tokens"],
            temperature=record["temperature"],
            output_schema=record["output_schema"],
        )
    return requests


def registered_agent(registry: Registry, name: str) -> tuple[Agent, Any]:
    """The Agent registered with `app.agent(...)` under `name`, and its deps."""
    definition = registry.definition(name)
    if definition.kind != "agent":
        raise NotReplayable(
            f"{name!r} is a {definition.kind}, not an agent; replay re-runs agent runs "
            "(agents registered with app.agent(...))"
        )
    # app.agent's job function carries its agent and deps (rota.shadow.agent_job).
    agent = getattr(definition.fn, "rota_agent", None)
    if not isinstance(agent, Agent):
        raise NotReplayable(f"cannot find the Agent behind job {name!r}")
    return agent, getattr(definition.fn, "rota_deps", None)


def replay_run(app: ReplaySource, run_id: str, *, recorded_tools: bool = False) -> ReplayReport:
    """Replay run `run_id` of an agent registered on `app` (see the module's docstring).
    Raises RunNotFound, UnknownJobError (the agent is no longer registered) or
    NotReplayable. From async code, use `await replay(...)`."""
    run = app.store.get_run(run_id)
    steps = app.store.steps(run_id)
    if run.kind != "agent":
        raise NotReplayable(
            f"run {run_id} is a {run.kind} run ({run.name}); only agent runs can be replayed"
        )
    if run.state not in (RunState.SUCCEEDED, RunState.FAILED):
        raise NotReplayable(
            f"run {run_id} is {run.state.value}; replay a run that has finished (SUCCEEDED or "
            "FAILED)"
        )
    agent, deps = registered_agent(app, run.name)
    return asyncio.run(
        replay(
            agent,
            run,
            steps,
            deps=deps,
            store=app.store,
            clock=app.clock,
            recorded_tools=recorded_tools,
        )
    )


async def replay(
    agent: Agent,
    run: Run,
    steps: Sequence[Step],
    *,
    deps: Any = None,
    store: Store,
    clock: Clock = system_clock,
    recorded_tools: bool = False,
) -> ReplayReport:
    """Replay a recorded `run` of `agent` from its `steps` with the current code."""
    recording = {s.key: s for s in steps}
    answers = _answers(recording)
    model = ReplayModel(agent.model.provider, agent.model.name, answers)
    replaying = copy.copy(agent)
    replaying.model = model  # the real model is out of reach from here on
    ctx = _ReplayContext(run, _Runtime(clock, store), recording, model, recorded_tools)

    divergence: Divergence | None = None
    result: Any = None
    error: str | None = None
    try:
        outcome = await replaying.run(run.payload, deps=deps, ctx=ctx)
        result, error = _outcome(agent.name, outcome)
    except _Diverged as stop:
        divergence = stop.divergence
    except Exception as exc:  # the run would have failed the same way in a worker
        error = f"{type(exc).__name__}: {exc}"

    recorded_result = run.result if run.state == RunState.SUCCEEDED else None
    recorded_error = None
    if run.state == RunState.FAILED:
        info = run.error or {}
        recorded_error = f"{info.get('type', '')}: {info.get('message', '')}"
    if divergence is None and ctx.tool_diffs:
        divergence = ctx.tool_divergence(next(iter(ctx.tool_diffs)))
    if divergence is None and model.calls < len(answers):
        missing = f"model#{model.calls + 1}"
        divergence = Divergence(
            missing,
            "fewer_calls",
            f"the new code ended after {model.calls} model calls; the recording has "
            f"{len(answers)} ({missing} is never asked)",
            recorded=len(answers),
            replayed=model.calls,
        )
    if divergence is None and (result, error) != (recorded_result, recorded_error):
        divergence = Divergence(
            "result",
            "result",
            "the final result differs",
            (
                f"recorded: {_short(recorded_error or recorded_result)}",
                f"now:      {_short(error or result)}",
            ),
            recorded={"result": recorded_result, "error": recorded_error},
            replayed={"result": result, "error": error},
        )
    notes = []
    if answers and ctx.unrecorded_requests:
        notes.append(
            "this run was recorded before model requests were stored with their steps: "
            "tool results, the number of model calls and the result were compared"
        )
    return ReplayReport(
        run_id=run.id,
        agent=agent.name,
        identical=divergence is None,
        first_divergence=divergence,
        steps_compared=min(model.calls, len(answers)),
        recorded_steps=len(answers),
        result=result,
        recorded_result=recorded_result,
        error=error,
        recorded_error=recorded_error,
        recorded_tools=recorded_tools,
        notes=tuple(notes),
    )


def _answers(recording: dict[str, Step]) -> list[ModelResponse | BaseException]:
    """The recorded model responses in call order; a failed call raises its error again."""
    answers: list[ModelResponse | BaseException] = []
    while (step := recording.get(f"model#{len(answers) + 1}")) is not None:
        if step.state == "SUCCEEDED":
            data = {k: v for k, v in step.result.items() if k != "request"}
            answers.append(response_from_json(data))
            continue
        info = step.error or {}
        kind, message = info.get("type", "Exception"), info.get("message", "")
        exc: BaseException = (
            ProviderError("replay", message)
            if kind == "ProviderError"
            else type(kind, (Exception,), {})(message)
        )
        exc.args = (message,)  # str(exc) exactly as recorded
        answers.append(exc)
        break  # a failed call ends the attempt; a later attempt would have overwritten it
    return answers


def _outcome(agent: str, result: AgentResult) -> tuple[Any, str | None]:
    if result.ok:
        return serialization.roundtrip(result.output_json, what="the agent's output"), None
    return None, f"AgentFailed: {AgentFailed(agent, result.reason, result.error)}"


# -- the replaying run context -------------------------------------------------------------


@dataclass
class _Runtime:
    clock: Clock
    store: Store

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def write_audit(self, entries: Sequence[AuditEntry] = ()) -> None:
        self.store.audit_many(entries)


class _ReplayContext(RunContext):
    """A RunContext whose steps are compared with the recording instead of being stored.

    The agent loop runs unmodified: its model steps call the ReplayModel and produce the
    same JSON (response + request) a real run stores, which is then compared with the
    recorded step; its tool steps run the tools (or return the recorded results)."""

    def __init__(
        self,
        run: Run,
        runtime: _Runtime,
        recording: dict[str, Step],
        model: ReplayModel,
        recorded_tools: bool,
    ) -> None:
        super().__init__(run, runtime, {})
        self.recording = recording
        self.model = model
        self.recorded_tools = recorded_tools
        self.tool_keys: dict[str, str] = {}  # call id -> tool step key
        self.tool_diffs: dict[str, tuple[Any, Any]] = {}  # step key -> (recorded, now)
        self.unrecorded_requests = 0

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        timeout: Duration | None = None,
        backoff: Duration = "1s",
        **kwargs: Any,
    ) -> Any:
        key = self._next_key(name)
        recorded = self.recording.get(key)
        is_tool = key.startswith("tool:")
        if is_tool and self.recorded_tools:
            if recorded is None or recorded.state != "SUCCEEDED":
                raise _Diverged(Divergence(key, "tool", f"{key} has no recorded result to return"))
            self.tool_keys[recorded.result["call_id"]] = key
            return recorded.result
        info = StepInfo(self.run.id, key, 1, f"{self.run.id}:{key}")
        with step_scope(info):
            try:
                value = await call_user(
                    fn, args, kwargs, timeout=optional_seconds(timeout), what=f"step {key!r}"
                )
            except Unanswered as exc:
                raise _Diverged(self._unanswered(key, exc.request)) from None
            except _ReplayStop:
                raise
            except Exception as exc:  # as a durable step reports it (the loop relies on this)
                raise StepFailed(key, type(exc).__name__, str(exc)) from exc
        value = serialization.roundtrip(value, what=f"the result of step {key!r}")
        if _MODEL_STEP.fullmatch(key):
            self._compare_request(key, value["request"], recorded)
        elif is_tool:
            self._compare_tool(key, value, recorded)
        return value

    def _compare_request(self, key: str, now: dict[str, Any], recorded: Step | None) -> None:
        before = recorded.result.get("request") if recorded and recorded.result else None
        if before is None:
            self.unrecorded_requests += 1
            return
        self.tool_diffs.clear()  # any difference so far shows in this request
        if before == now:
            return
        raise _Diverged(
            Divergence(
                key,
                "request",
                f"{key}: the new code sends the model a different request",
                tuple(self._explain(before, now)) or ("the stored requests differ",),
                recorded=before,
                replayed=now,
            )
        )

    def _compare_tool(self, key: str, now: dict[str, Any], recorded: Step | None) -> None:
        self.tool_keys[now["call_id"]] = key
        before = recorded.result if recorded and recorded.state == "SUCCEEDED" else None
        if before == now:
            return
        self.tool_diffs[key] = (before, now)
        if self.unrecorded_requests:  # no request will show it: this is the divergence
            raise _Diverged(self.tool_divergence(key))

    def tool_divergence(self, key: str) -> Divergence:
        before, now = self.tool_diffs[key]
        return Divergence(
            key,
            "tool",
            f"{key}: the tool returns something else",
            (_tool_line(key, before, now),),
            recorded=before,
            replayed=now,
        )

    def _unanswered(self, key: str, request: ModelRequest) -> Divergence:
        previous = self.model.requests[-2].messages if len(self.model.requests) > 1 else ()
        asked = request_record(request, previous)
        details = [
            f"message {i}: {_describe(m)}"
            for i, m in enumerate(asked["messages"], start=asked["messages_from"])
        ]
        return Divergence(
            key,
            "unanswered",
            f"{key}: the new code asks the model something the recording never answered "
            f"(the recording has {len(self.model.answers)} model calls)",
            tuple(details),
            replayed=serialization.roundtrip(asked, what="the request"),
        )

    def _explain(self, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
        lines = []
        labels = {
            "model": "model",
            "system": "instructions (system prompt)",
            "max_tokens": "max_tokens",
            "temperature": "temperature",
            "output_schema": "output schema",
            "messages_from": "conversation history",
        }
        for name, label in labels.items():
            if before.get(name) != now.get(name):
                lines.append(
                    f"{label} differs: recorded {_short(before.get(name))} "
                    f"now {_short(now.get(name))}"
                )
        lines += _tools_lines(before["tools"], now["tools"])
        start = now.get("messages_from", 0)
        pairs = zip_longest(before["messages"], now["messages"])
        for i, (old, new) in enumerate(pairs, start=start):
            if old == new:
                continue
            if old is None:
                lines.append(f"message {i} is new: {_describe(new)}")
            elif new is None:
                lines.append(f"message {i} is no longer sent: {_describe(old)}")
            else:
                lines += self._message_lines(i, old, new)
        return lines

    def _message_lines(self, i: int, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
        lines = []
        if old["role"] != new["role"] or old["text"] != new["text"]:
            lines.append(
                f"message {i} ({new['role']}) text differs: recorded {_short(old['text'])} "
                f"now {_short(new['text'])}"
            )
        if old["tool_calls"] != new["tool_calls"]:
            lines.append(
                f"message {i} tool calls differ: recorded {_short(old['tool_calls'])} "
                f"now {_short(new['tool_calls'])}"
            )
        for a, b in zip_longest(old["tool_results"], new["tool_results"]):
            if a != b:
                call_id = (b or a)["call_id"]
                key = self.tool_keys.get(call_id, f"tool call {call_id}")
                lines.append(_tool_line(key, a, b))
        return lines


# -- describing differences ----------------------------------------------------------------


def _tools_lines(before: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    old = {t["name"]: t for t in before}
    new = {t["name"]: t for t in now}
    lines = [f"tool {n} is new" for n in new if n not in old]
    lines += [f"tool {n} was removed" for n in old if n not in new]
    for n in old.keys() & new.keys():
        for part in ("description", "input_schema"):
            if old[n][part] != new[n][part]:
                lines.append(
                    f"tool {n} {part} differs: recorded {_short(old[n][part])} "
                    f"now {_short(new[n][part])}"
                )
    if not lines and before != now:
        lines.append("the tools are listed in another order")
    return lines


def _tool_line(key: str, before: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    if before is None:
        return f"{key} was not recorded; now {_short(now and now['content'])}"
    if now is None:
        return f"{key} is no longer called (recorded {_short(before['content'])})"
    line = (
        f"{key} result differs: recorded {_short(before['content'])} now {_short(now['content'])}"
    )
    if before["is_error"] != now["is_error"]:
        line += " (now an error)" if now["is_error"] else " (no longer an error)"
    return line


def _describe(message: dict[str, Any]) -> str:
    parts = []
    if message.get("text"):
        parts.append(_short(message["text"]))
    parts += [f"calls {c['name']}({_short(c['arguments'])})" for c in message.get("tool_calls", ())]
    parts += [f"tool result {_short(r['content'])}" for r in message.get("tool_results", ())]
    return f"{message['role']}: " + ("; ".join(parts) or "(empty)")


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if isinstance(value, str) else text


__all__ = [
    "Divergence",
    "NotReplayable",
    "ReplayModel",
    "ReplayReport",
    "ReplaySource",
    "recorded_requests",
    "registered_agent",
    "replay",
    "replay_run",
]
