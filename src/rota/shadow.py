"""Shadow mode: run the agent on a sample of the items a job handled, and measure agreement.

A shadow run (trigger "shadow", see rota.escalation) gives the agent the item exactly as an
escalation would, minus the job's answer. The agent's tools run only when they are marked
`@tool(read_only=True)`; any other call is answered "not performed: shadow mode" and has no
effect, so the agent's decision is recorded and never acted upon. Its structured output is
then compared with the job's result field by field (top-level keys; numbers compare by
value) and stored with the run's tokens. `rota shadow report NAME` shows the agreement rate,
per field, and the disagreeing items: the data for moving logic between job and agent.
"""

from __future__ import annotations

import contextvars
import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .agents.tools import CallNext, ToolDenied, ToolInvocation, ToolMiddleware
from .agents.types import AgentResult, ToolResult
from .calls import call_user
from .errors import AgentFailed
from .escalation import shadow
from .storage.shadow import ShadowRecord

if TYPE_CHECKING:
    from .agentloop.agent import Agent
    from .context import RunContext

WHOLE = "(value)"  # the one "field" compared when a result is not an object


def compare(job_result: Any, agent_output: Any) -> dict[str, bool]:
    """Per top-level field: do the job and the agent agree? A field only one side has is a
    disagreement."""
    if isinstance(job_result, Mapping) and isinstance(agent_output, Mapping):
        keys = sorted(set(job_result) | set(agent_output))
        return {
            k: k in job_result and k in agent_output and _same(job_result[k], agent_output[k])
            for k in keys
        }
    return {WHOLE: _same(job_result, agent_output)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return not isinstance(b, bool) and float(a) == float(b)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


class ShadowSkipped(ToolDenied):
    """A tool that may change something is not performed in shadow mode."""


class ShadowMode:
    """Tool middleware of a shadow run: a tool that is not read-only has no effect."""

    async def __call__(self, inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        if not inv.tool.read_only:
            raise ShadowSkipped(
                "not performed: this is a shadow run, whose decisions are recorded but never "
                "acted upon; continue as if it had succeeded and give your final answer"
            )
        return await call_next(inv)


async def run_shadow(
    ctx: RunContext,
    agent: Agent,
    deps: Any,
    task: Mapping[str, Any],
    *,
    ask: Any = None,
    middleware: Sequence[ToolMiddleware] = (),
) -> Any:
    """The body of a shadow run: decide, compare with the job, record; never act. `ask`:
    what the agent is given (default: `{"item": ...}`; a routine gives its prompt and the
    item); `middleware`: the agent's own tool middleware, inside shadow mode."""
    runtime = ctx.runtime
    origin = task["shadow_of"]
    question = {"item": task["item"]} if ask is None else ask
    result: AgentResult = await agent.run(
        question, deps=deps, ctx=ctx, tool_middleware=(ShadowMode(), *middleware)
    )
    error = None if result.ok else f"{result.reason}: {result.error or ''}".strip(": ")
    record = ShadowRecord(
        run_id=ctx.run.id,
        parent_id=origin["run_id"],
        name=origin["name"],
        agent=agent.name,
        created_at=runtime.clock.now(),
        fields={} if error else compare(task["job_result"], result.output_json),
        job_result=task["job_result"],
        agent_output=result.output_json,
        tokens=_tokens(result),
        error=error,
    )
    await runtime.db(runtime.store.record_shadow, record)
    if error is not None:
        raise AgentFailed(agent.name, result.reason, result.error)
    return {"shadow_of": origin["run_id"], "agreed": record.agreed, "fields": dict(record.fields)}


def _tokens(result: AgentResult) -> int:
    u = result.usage
    return u.input_tokens + u.output_tokens + u.cache_write_tokens + u.cache_read_tokens


def is_shadow_task(task: Any) -> bool:
    """Whether a payload is a shadow run's task (rota.escalation.shadow made it)."""
    return isinstance(task, dict) and "shadow_of" in task and "job_result" in task


def agent_job(agent: Agent, deps: Any) -> Callable[..., Awaitable[Any]]:
    """The job function of a registered agent: a shadow task runs in shadow mode, any
    other task as usual."""
    normal = agent.job_function(deps)

    async def run_agent(ctx: RunContext, task: Any) -> Any:
        if is_shadow_task(task):
            return await run_shadow(ctx, agent, deps, task)
        return await normal(ctx, task)

    run_agent.__name__ = run_agent.__qualname__ = agent.name
    run_agent.__doc__ = normal.__doc__
    run_agent.rota_agent = agent  # type: ignore[attr-defined]  # for replay
    run_agent.rota_deps = deps  # type: ignore[attr-defined]
    return run_agent


def shadowing(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """`fn`, then, for an item it handled itself (did not escalate), a shadow run when the
    item is in the sample (enqueued through the run's services)."""

    async def run_and_shadow(ctx: RunContext, *payload: Any) -> Any:
        result = await call_user(fn, (ctx, *payload), {}, timeout=None, what=f"{ctx.run.name}")
        if not (isinstance(result, dict) and "escalated_to" in result):
            runtime = ctx.runtime
            services = ctx.services
            assert services is not None  # a run of an App's worker
            item = payload[0] if payload else None
            send = functools.partial(
                shadow, services.registry, services.enqueue, ctx.run, clock=runtime.clock
            )
            # In this context: the shadow run continues this run's trace (rota.observability).
            await runtime.db(contextvars.copy_context().run, send, item, result)
        return result

    functools.update_wrapper(run_and_shadow, fn)
    return run_and_shadow
