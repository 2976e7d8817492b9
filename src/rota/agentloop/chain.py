"""What one agent run calls: the model chain and the tool calls, composed for that run
(`compose`). This is the one place that knows a durable run from one in memory.

The model chain is layers of `Model`, each wrapping the next; the loop calls the outermost
with the plain request (the conversation, every tool). Outermost first:

    RedactedModel -> PermittedTools -> BudgetedModel -> DurableModel (durable runs only)
      -> MeteredModel -> TracedModel (when tracing) -> the agent's own model (`base_model`)

The budget check is outside the durable step (a refused call writes no step and does not use
up `model#n`); the shared-budget hold and the usage record are inside it. At the bottom is
`AgentSpec.model`: `RetryingModel -> RateLimitedModel -> provider`, less the layers that do
not apply; the retries stay outside the rate limit, so that every attempt, retried ones too,
waits its turn.

Each tool call (`DurableTools`: the step `tool:NAME`; `LocalTools` in memory) is validated,
then passes the tool middleware, outermost first:

    TracedTools (when tracing) -> the scope check -> the agent's tool_guards
      -> extra middleware (e.g. shadow mode) -> ApprovalGate -> the tool.called audit
      -> the tool

so a human is asked only about calls everything else let through.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import pydantic

from ..agents.models.ratelimited import RateLimitedModel
from ..agents.models.retrying import RetryingModel
from ..agents.permissions import Lookup, ToolAccess
from ..agents.spec import AgentSpec
from ..agents.tools import ToolContext, ToolMiddleware, guarded
from ..agents.types import Message, Model, ToolCall, ToolResult, Usage, to_json
from ..approvals.gate import NO_COST, ApprovalGate, cost_so_far
from ..durable import write_audit
from ..identity.directory import directory_for
from ..identity.principals import Principal
from ..identity.secrets import Vault
from ..observability import tool_middleware as traced_tools
from ..observability import traced_model
from ..storage.audit import AuditEntry
from .metering import (
    AskMore,
    BudgetedModel,
    Meter,
    MeteredModel,
    MeteredRun,
    shared_budgets,
)
from .request import PermittedTools, RedactedModel
from .steps import ContextFor, DurableModel, DurableTools, LocalTools

if TYPE_CHECKING:
    from ..context import RunContext
    from ..storage.secrets import SecretQueries

ToolRunner = Callable[[ToolCall], Awaitable[ToolResult]]


@dataclass(frozen=True)
class AgentRun:
    """One run of an agent, composed: what the loop calls and the conversation it keeps."""

    model: Model  # the model chain (the same Model protocol)
    tools: ToolRunner  # runs a call of one of the agent's tools
    messages: list[Message]  # the conversation: the loop appends, the approval gate reads
    close: Callable[[int], Awaitable[None]]  # records the session time (and tool calls)


def compose(
    agent: AgentSpec,
    task: Any,
    *,
    deps: Any = None,
    ctx: RunContext | None = None,
    prefix: str = "",
    principal: Principal | None = None,
    tool_middleware: Sequence[ToolMiddleware] = (),
) -> AgentRun:
    """The model chain and the tool calls of one run of `agent` (see the module docstring):
    with `ctx`, durable steps of that run, its principal's access, its budgets and
    approvals; without, in memory, with `principal`'s access (None: no scopes)."""
    messages = [Message("user", task_text(task))]
    access = tool_access(agent.name, ctx, principal)
    meter = meter_for(agent, ctx, prefix)
    base = agent.model if ctx is None else base_model(agent, ctx.runtime.store, ctx.runtime.db)
    model = model_chain(
        agent, base, ctx=ctx, prefix=prefix, access=access, meter=meter, messages=lambda: messages
    )
    gate = ApprovalGate(
        agent.name,
        ask=ctx,
        messages=lambda: messages,
        cost_so_far=_no_cost
        if ctx is None
        else partial(cost_so_far, ctx.runtime.store, ctx.runtime.db, ctx.run_id),
    )
    middleware = (
        *traced_tools(agent.name),  # when tracing: outermost, so refusals are traced too
        guarded(access.check),
        *map(guarded, agent.tool_guards),
        *tool_middleware,
        gate,
        guarded(access.called),
    )
    tools: ToolRunner
    if ctx is None:
        context = _tool_context(agent, deps, None, agent.run_as, access)
        tools = LocalTools(prefix, agent.tools, context, middleware)
    else:
        context = _tool_context(agent, deps, ctx.run_id, ctx.principal, access)
        tools = DurableTools(ctx, prefix, agent.tools, context, middleware)
    return AgentRun(model, tools, messages, meter.close)


def _tool_context(
    agent: AgentSpec, deps: Any, run_id: str | None, principal: str | None, access: ToolAccess
) -> ContextFor:
    def context(call: ToolCall, key: str) -> ToolContext[Any]:
        return ToolContext(
            deps=deps,
            run_id=run_id,
            principal=principal,
            idempotency_key=key,
            agent=agent.name,
            tool=call.name,
            call_id=call.id,
            secrets=access.secrets,
        )

    return context


async def _no_cost() -> dict[str, Any]:
    return dict(NO_COST)


def tool_access(agent: str, ctx: RunContext | None, principal: Principal | None) -> ToolAccess:
    """The access of one agent run: in a durable run, its principal as the store has it now,
    audited to the store; in memory, the principal given (None: no scopes), not audited."""
    if ctx is None:
        return ToolAccess(agent, lambda: principal)
    runtime = ctx.runtime
    store = runtime.store
    directory = directory_for(store)
    name = ctx.principal

    write = runtime.write_audit

    async def record(entry: AuditEntry) -> None:
        await write_audit(runtime, [entry])  # with the other runs' records of the moment

    vault = Vault(cast("SecretQueries", store), audit_with=write)
    run_id = ctx.run_id

    def secret(secret_name: str) -> str:
        return vault.get(secret_name, name, run_id=run_id)

    lookup: Lookup = (lambda: directory.get(name)) if name else (lambda: None)
    return ToolAccess(agent, lookup, record, run_id, secret)


def task_text(task: Any) -> str:
    """The task as the first user message."""
    if task is None:
        return "Start."
    if isinstance(task, str):
        return task
    if isinstance(task, pydantic.BaseModel):
        return task.model_dump_json()
    return json.dumps(task, default=str)


def base_model(agent: AgentSpec, store: Any, call: Callable[..., Awaitable[Any]]) -> Model:
    """The agent's model for a durable run: its rate limit is the one every worker shares,
    in the run's store (`call` runs a store call on the worker's database threads). In
    memory, `agent.model` is used as defined (a limit kept in this process)."""
    model = agent.model
    if isinstance(model, RateLimitedModel):
        return model.bound(store, call)
    if isinstance(model, RetryingModel) and isinstance(model.model, RateLimitedModel):
        retrying = copy.copy(model)
        retrying.model = model.model.bound(store, call)
        return retrying
    return model


def model_chain(
    agent: AgentSpec,
    base: Model,
    *,
    ctx: RunContext | None,
    prefix: str,
    access: ToolAccess,
    meter: Meter,
    messages: Callable[[], Sequence[Message]],
) -> Model:
    """The model chain of one run, outermost first (see the module docstring)."""
    # Tracing (when on) wraps the provider itself: a call answered from its checkpoint
    # is not a call.
    model: Model = MeteredModel(traced_model(base, agent.name), meter)
    if ctx is not None:
        model = DurableModel(model, ctx, prefix)
    ask_more = budget_approval(agent, ctx, prefix)
    model = BudgetedModel(model, meter, ask_more=ask_more, messages=messages)
    return RedactedModel(PermittedTools(model, access, agent.tools))


def budget_approval(agent: AgentSpec, ctx: RunContext | None, prefix: str) -> AskMore | None:
    """With Budget(approvers=...) in a durable run: park and ask a human to allow one more
    budget's worth (a decision is checkpointed, so a resumed run takes the same path)."""
    budget = agent.budget
    if ctx is None or budget is None or not budget.approvers:
        return None
    run_ctx, approvers, timeout = ctx, budget.approvers, budget.approval_timeout

    async def ask_more(problem: str, used: Usage) -> bool:
        decision = await run_ctx.approval(
            f"Agent {agent.name!r} has used its budget: {problem}. Allow it as much again?",
            approvers=approvers,
            timeout=timeout,
            on_timeout="reject",
            context={"agent": agent.name, "usage": to_json(used), "why": problem},
            name=f"{prefix}budget",
        )
        return bool(decision.approved)

    return ask_more


def meter_for(agent: AgentSpec, ctx: RunContext | None, prefix: str) -> Meter:
    """The run's meter: a durable run meters to the store of the worker running it, on its
    clock, under the shared budgets that apply; in memory, the agent's own Budget only."""
    if ctx is None:
        return Meter(agent, prefix=prefix)
    runtime = ctx.runtime
    return Meter(
        agent,
        clock=runtime.clock,
        durable=MeteredRun(ctx.run, runtime.store, runtime.db),
        shared=shared_budgets(agent, ctx),
        prefix=prefix,
    )
