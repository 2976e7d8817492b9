"""The agent loop: call the model, run the tools it asks for, check its answer, repeat.

The loop is the plain algorithm. What a run adds around it is composed in agentloop/chain.py:
the model chain (redaction, permitted tools, the budget, the durable step, metering, then the
agent's own model) and the tool calls (their middleware: scopes, guards, approvals, audit).
In a durable run, model and tool calls are steps (`model#1`, `tool:NAME`, ...) whose results
are stored as JSON: a resumed run gets them back from the checkpoints, and since the loop
decides only from those results, it takes the same path again, up to the first call that
had not completed (see agentloop/steps.py).

The loop ends with exactly one reason (see AgentResult): an accepted answer, or one of the
protections (max_steps, a repeated tool call, the wall-clock timeout, the budget, a provider
that keeps failing).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pydantic

from ..agents.types import (
    AgentResult,
    Message,
    ModelRequest,
    ModelResponse,
    Reason,
    ToolCall,
    ToolResult,
    Usage,
)
from ..errors import BudgetExceeded, ProviderError, StepFailed, StoreLost, StoreUnavailable
from .chain import AgentRun
from .metering import BudgetRefused

if TYPE_CHECKING:
    from ..agents.spec import AgentSpec


class _Stop(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(detail)


class AgentLoop:
    """One run of an agent; not reusable."""

    def __init__(self, agent: AgentSpec, composed: AgentRun) -> None:
        self.agent = agent
        self.model = composed.model  # the model chain (agentloop/chain.py)
        self.call_tool = composed.tools
        self.close = composed.close  # session time
        self.messages: list[Message] = composed.messages
        self.usage = Usage(requests=0)
        self.steps = 0
        self.tool_calls = 0
        self.simulated = False
        self.last_response: ModelResponse | None = None
        # Why the last final answer was refused: ("invalid_output" | "success_check_failed", ..)
        self.last_failure: tuple[str, str] | None = None
        self._streak: tuple[str, int] = ("", 0)

    async def run(self) -> AgentResult:
        try:
            result = await self._run()
        except asyncio.CancelledError:
            raise  # interrupted (lease lost, shutdown): nothing more to write
        except BaseException:
            await self.close(self.tool_calls)  # e.g. parked on a wait: time so far
            raise
        await self.close(self.tool_calls)
        return result

    async def _run(self) -> AgentResult:
        timeout = self.agent.timeout_s
        try:
            async with asyncio.timeout(timeout) as scope:
                return await self._loop()
        except _Stop as stop:
            return self._result(stop.reason, stop.detail)
        except TimeoutError:
            if not scope.expired():
                raise
            return self._result("timeout", f"no accepted answer within {timeout:g}s")

    async def _loop(self) -> AgentResult:
        while True:
            if self.steps >= self.agent.max_steps:
                reason: Reason = "max_steps"
                detail = f"no accepted answer after {self.steps} model calls"
                if self.last_failure is not None:
                    kind, why = self.last_failure
                    if kind == "success_check_failed":
                        reason = "success_check_failed"
                    detail += f"; the last answer was refused: {why}"
                raise _Stop(reason, detail)
            try:
                response = await self.model.complete(self._request())
            except BudgetRefused as exc:  # refused before any call: not a step
                raise _Stop("budget_exceeded", str(exc)) from exc
            except BaseException as exc:  # the call was made: it counts
                self.steps += 1
                stop = _stop_for(exc)
                if stop is None:
                    raise  # interruptions, parking, other failed steps: unchanged
                raise stop from exc
            self.steps += 1
            self.last_response = response
            self.usage += response.usage
            self.simulated = self.simulated or response.simulated
            self.messages.append(
                Message("assistant", response.text, response.tool_calls, thinking=response.thinking)
            )
            if response.tool_calls:
                results = [await self._tool(call) for call in response.tool_calls]
                self.messages.append(Message("user", tool_results=tuple(results)))
                continue
            try:
                output, data = self.agent.validate_output(response.text)
            except pydantic.ValidationError as exc:
                self._refuse("invalid_output", _invalid_output(exc))
                continue
            problem = await self._check_success(output)
            if problem is not None:
                self._refuse("success_check_failed", problem)
                continue
            return self._result("succeeded", None, output=output, output_json=data)

    # -- model ---------------------------------------------------------------------------

    def _request(self) -> ModelRequest:
        """The plain request; the model chain redacts it and keeps to the permitted tools."""
        a = self.agent
        return ModelRequest(
            model=a.model.name,
            system=a.instructions,
            messages=tuple(self.messages),
            tools=tuple(t.spec for t in a.tools.values()),
            max_tokens=a.max_tokens,
            temperature=a.temperature,
            output_schema=a.output_schema,
        )

    # -- tools ---------------------------------------------------------------------------

    async def _tool(self, call: ToolCall) -> ToolResult:
        self.tool_calls += 1
        self._check_repeat(call)
        tool = self.agent.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.agent.tools)) or "none"
            return ToolResult(
                call.id, f"unknown tool {call.name!r}; the tools you can call are: {known}", True
            )
        return await self.call_tool(call)

    def _check_repeat(self, call: ToolCall) -> None:
        """The same call with the same arguments N times in a row is a loop: stop before
        running it the Nth time."""
        signature = json.dumps([call.name, call.arguments], sort_keys=True, default=repr)
        last, count = self._streak
        count = count + 1 if signature == last else 1
        self._streak = (signature, count)
        if count >= self.agent.max_repeated_calls:
            raise _Stop(
                "repeated_tool_call",
                f"the model called {call.name} with the same arguments {count} times in a row",
            )

    # -- answers ------------------------------------------------------------------------

    async def _check_success(self, output: Any) -> str | None:
        check = self.agent.success
        if check is None:
            return None
        try:
            verdict = check(output)
            if asyncio.iscoroutine(verdict) or isinstance(verdict, asyncio.Future):
                verdict = await verdict
        except StoreUnavailable as exc:  # rota's own database failed, not the answer
            raise StoreLost(exc) from exc
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None if verdict is None or verdict is True else "the success check returned False"

    def _refuse(self, kind: str, problem: str) -> None:
        self.last_failure = (kind, problem)
        if kind == "success_check_failed":
            text = f"Your answer did not pass the success check: {problem}. Fix it, answer again."
        else:
            text = (
                f"Your final answer does not match the required output schema: {problem}. "
                "Reply with only a JSON value that matches the schema."
            )
        self.messages.append(Message("user", text))

    def _result(
        self, reason: Reason, error: str | None, *, output: Any = None, output_json: Any = None
    ) -> AgentResult:
        return AgentResult(
            output=output,
            text=self.last_response.text if self.last_response else "",
            reason=reason,
            usage=self.usage,
            steps=self.steps,
            messages=tuple(self.messages),
            simulated=self.simulated,
            error=error,
            output_json=output_json,
            tool_calls=self.tool_calls,
        )


def _stop_for(exc: BaseException) -> _Stop | None:
    """The end of the run for a model call that failed: a provider that keeps failing or a
    shared budget, also when its durable step reports it; None for anything else."""
    cause = exc.__cause__ if isinstance(exc, StepFailed) else exc
    if isinstance(cause, ProviderError | BudgetExceeded):
        return _Stop(_stop_reason(cause), str(cause))
    return None


def _stop_reason(exc: BaseException) -> Reason:
    return "budget_exceeded" if isinstance(exc, BudgetExceeded) else "provider_error"


def _invalid_output(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
