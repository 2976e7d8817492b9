"""The agent loop: call the model, run the tools it asks for, check its answer, repeat.

Every model call and every tool call goes through `_model_step` / `_tool_step`. With a run
context they are durable steps (`model#1`, `tool:NAME`, ...) whose results are stored as
JSON: a resumed run gets them back from the checkpoints, and since the loop decides only
from those results, it takes the same path again, up to the first call that had not
completed. Without a context they run in memory.

A model step stores the `ModelResponse` and, under its "request" key, the normalised request
(see `_request_record`), so that `rota.agents.replay` can tell where a new code path would
ask the model something else.

The loop ends with exactly one reason (see AgentResult): an accepted answer, or one of the
protections (max_steps, a repeated tool call, the wall-clock timeout, the budget, a provider
that keeps failing).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pydantic

from ..errors import ProviderError, StepFailed
from ..identity.access import tool_access
from ..identity.principals import Principal
from ..identity.redact import redactor
from ..ids import new_id
from .agent import Agent, AgentResult, Reason
from .approvals import ToolApprovals
from .budgets import BudgetExceeded, Metering, messages_bound, prompt_bound
from .tools import ToolContext
from .types import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    Usage,
    response_from_json,
    to_json,
)

if TYPE_CHECKING:
    from ..durable import RunContext


class _Stop(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(detail)


class AgentLoop:
    """One run of an agent; not reusable."""

    def __init__(
        self,
        agent: Agent,
        task: Any,
        *,
        deps: Any = None,
        ctx: RunContext | None = None,
        prefix: str = "",
        principal: Principal | None = None,
    ) -> None:
        self.agent = agent
        self.deps = deps
        self.ctx = ctx
        self.prefix = prefix
        self.access = tool_access(agent.name, ctx, principal)
        # Approval gates ask a human only about calls every other guard let through.
        gate = ToolApprovals(agent.name, ctx, lambda: self.messages).check
        self.guards = (self.access.check, *agent.tool_guards, gate, self.access.called)
        self.local_id = None if ctx is not None else f"local-{new_id()}"
        self.messages: list[Message] = [Message("user", _task_text(task))]
        self.usage = Usage(requests=0)
        self.steps = 0
        self.tool_calls = 0
        self.simulated = False
        self.last_response: ModelResponse | None = None
        # Why the last final answer was refused: ("invalid_output" | "success_check_failed", ..)
        self.last_failure: tuple[str, str] | None = None
        self._streak: tuple[str, int] = ("", 0)
        self._local_keys: dict[str, int] = {}
        self._sent: tuple[Message, ...] = ()  # the messages of the previous model request
        self.meter = Metering(agent, ctx, prefix)  # budgets and usage (agents/budgets.py)

    async def run(self) -> AgentResult:
        try:
            result = await self._run()
        except asyncio.CancelledError:
            raise  # interrupted (lease lost, shutdown): nothing more to write
        except BaseException:
            await self.meter.close(self.tool_calls)  # e.g. parked on a wait: time so far
            raise
        await self.meter.close(self.tool_calls)
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
            request = self._request()
            await self._check_budget(request)
            self.steps += 1
            response = await self._model_step(self.steps, request)
            self.last_response = response
            self.usage += response.usage
            self.simulated = self.simulated or response.simulated
            self.messages.append(Message("assistant", response.text, response.tool_calls))
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
        a = self.agent
        return _redacted(
            ModelRequest(
                model=a.model.name,
                system=a.instructions,
                messages=tuple(self.messages),
                tools=tuple(t.spec for t in self.access.visible(a.tools).values()),
                max_tokens=a.max_tokens,
                temperature=a.temperature,
                output_schema=a.output_schema,
            )
        )

    async def _check_budget(self, request: ModelRequest) -> None:
        """Fail closed: refuse the call if its worst case could exceed what is left of the
        run's budget (tokens, requests, USD at the model's price; see agents/budgets.py)."""
        prompt = self._prompt_estimate(request)
        problem = self.meter.check(self.usage, prompt, request.max_tokens)
        while problem is not None:
            if not await self._more_budget(problem):
                await self.meter.refused(problem, limit="run")
                raise _Stop("budget_exceeded", problem)
            problem = self.meter.check(self.usage, prompt, request.max_tokens)

    async def _more_budget(self, problem: str) -> bool:
        """With Budget(approvers=...): park and ask a human to allow one more budget's
        worth (a decision is checkpointed, so a resumed run takes the same path)."""
        budget = self.agent.budget
        if self.ctx is None or budget is None or not budget.approvers:
            return False
        decision = await self.ctx.approval(
            f"Agent {self.agent.name!r} has used its budget: {problem}. Allow it as much again?",
            approvers=budget.approvers,
            timeout=budget.approval_timeout,
            on_timeout="reject",
            context={"agent": self.agent.name, "usage": to_json(self.usage), "why": problem},
            name=f"{self.prefix}budget",
        )
        if decision.approved:
            self.meter.allowances += 1
        return bool(decision.approved)

    def _prompt_estimate(self, request: ModelRequest) -> int:
        # An upper bound of the provider's count (agents/budgets.py). The previous prompt and
        # reply as the provider counted them, plus the bound of what was added since, is a
        # floor: a provider that frames more than the bound allows is caught from then on.
        whole = prompt_bound(request, self.meter.provider)
        last = self.last_response
        if last is None:
            return whole
        known = _tokens(last.usage) + messages_bound(self.messages[-1:])
        return max(whole, known)

    async def _model_step(self, n: int, request: ModelRequest) -> ModelResponse:
        model = self.agent.model

        async def complete() -> dict[str, Any]:
            data: dict[str, Any] = to_json(await self.meter.complete(model, request))
            return {**data, "request": record}

        try:
            if self.ctx is None:
                response = await self.meter.complete(model, request)
            else:
                record = _request_record(request, self._sent)
                self._sent = request.messages
                data = await self.ctx.step(f"{self.prefix}model#{n}", complete)
                # Checkpoints written before requests were recorded have no "request" key.
                response = response_from_json({k: v for k, v in data.items() if k != "request"})
        except (ProviderError, BudgetExceeded) as exc:
            raise _Stop(_stop_reason(exc), str(exc)) from exc
        except StepFailed as exc:
            if isinstance(exc.__cause__, ProviderError | BudgetExceeded):
                raise _Stop(_stop_reason(exc.__cause__), str(exc.__cause__)) from exc
            raise
        self.meter.observe(response)
        return response

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
        return await self._tool_step(call)

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

    async def _tool_step(self, call: ToolCall) -> ToolResult:
        tool = self.agent.tools[call.name]
        name = f"{self.prefix}tool:{call.name}"

        async def invoke() -> dict[str, Any]:
            context = ToolContext(
                deps=self.deps,
                run_id=self.ctx.run_id if self.ctx else None,
                principal=self.ctx.principal if self.ctx else self.agent.run_as,
                idempotency_key=self._idempotency_key(name),
                agent=self.agent.name,
                tool=call.name,
                call_id=call.id,
                secrets=self.access.secrets,
            )
            result = await tool.run(call, context, self.guards)
            data: dict[str, Any] = to_json(result)
            return data

        data = await (invoke() if self.ctx is None else self.ctx.step(name, invoke))
        return ToolResult(**data)

    def _idempotency_key(self, name: str) -> str:
        if self.ctx is not None:
            return self.ctx.idempotency_key  # the step's own key, stable across resumes
        count = self._local_keys.get(name, 0) + 1
        self._local_keys[name] = count
        return f"{self.local_id}:{name}" + (f"#{count}" if count > 1 else "")

    # -- answers ------------------------------------------------------------------------

    async def _check_success(self, output: Any) -> str | None:
        check = self.agent.success
        if check is None:
            return None
        try:
            verdict = check(output)
            if asyncio.iscoroutine(verdict) or isinstance(verdict, asyncio.Future):
                verdict = await verdict
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


def _request_record(request: ModelRequest, sent: tuple[Message, ...]) -> dict[str, Any]:
    """The request as stored with its model step. The conversation only grows, so only the
    messages added since the previous request are stored (`messages` from index
    `messages_from`): the whole conversation at every step would grow quadratically. Should
    the history ever be rewritten, the whole of it is stored (`messages_from` 0)."""
    start = len(sent) if request.messages[: len(sent)] == sent else 0
    data: dict[str, Any] = to_json(replace(request, messages=request.messages[start:]))
    return {**data, "messages_from": start}


def _redacted(request: ModelRequest) -> ModelRequest:
    """The request without any secret value read in this process: a model never sees one,
    even when a tool returned it or the task carried it."""
    if not len(redactor):
        return request
    r = redactor.redact
    messages = tuple(
        replace(
            m,
            text=r(m.text),
            tool_calls=tuple(
                replace(c, arguments=redactor.redact_json(c.arguments)) for c in m.tool_calls
            ),
            tool_results=tuple(replace(t, content=r(t.content)) for t in m.tool_results),
        )
        for m in request.messages
    )
    return replace(request, system=r(request.system), messages=messages)


def _task_text(task: Any) -> str:
    if task is None:
        return "Start."
    if isinstance(task, str):
        return task
    if isinstance(task, pydantic.BaseModel):
        return task.model_dump_json()
    return json.dumps(task, default=str)


def _tokens(usage: Usage) -> int:
    u = usage
    return u.input_tokens + u.output_tokens + u.cache_write_tokens + u.cache_read_tokens


def _stop_reason(exc: BaseException) -> Reason:
    return "budget_exceeded" if isinstance(exc, BudgetExceeded) else "provider_error"


def _invalid_output(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
