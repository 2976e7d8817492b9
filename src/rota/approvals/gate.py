"""Approval gates for agent tool calls: `@tool(requires_approval=True)` or a per-call rule.

    @tool(scopes=["billing:refund"], approvers="finance", approval_timeout="4h",
          requires_approval=lambda args: args["amount_cents"] > 10_000)
    def refund(customer_id: str, amount_cents: int) -> str: ...

`ApprovalGate` is tool middleware, placed after the scope check and the agent's own guards
(a human is asked only about calls everything else let through) and before the `tool.called`
audit (agentloop/chain.py composes them). When a call needs approval it asks with
`ctx.approval` from inside the tool's durable step: the run parks there (the step is not
recorded, so it is neither done nor failed), and when a human decides, the run re-executes,
replays its model calls from their checkpoints, reaches the same tool step, and the
approval returns its decision from its own checkpoint (`<tool step>/approval`). Approved:
the tool runs, with the decision as its `ToolContext.approval`. Rejected, or nobody decided
within the tool's `approval_timeout`: the tool does not run, and the model gets
"rejected by <who>: <comment>" as the tool's error result, and carries on.

Who decides: the tool's `approvers` groups (principals with the role `approver:<group>`),
and admins; a tool that names no group is decided by admins only. The request shows the
tool and its arguments, the agent's recent reasoning (its last texts) and the run's model
cost so far.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pydantic_core

from ..agents.tools import CallNext, Tool, ToolContext, ToolDenied, ToolInvocation
from ..agents.types import Message, ToolResult
from ..runtime import current_step
from ..storage.approval_records import ApprovalDecision
from ..storage.base import MeteringStore

if TYPE_CHECKING:
    from ..storage.usage import ModelCall
    from .asking import Asker

_REASONING_TURNS = 3
_MAX_TEXT = 1000  # characters kept of each reasoning text and of the arguments shown
_PUSD_PER_USD = Decimal(10) ** 12


CostSoFar = Callable[[], Awaitable[dict[str, Any]]]


class ApprovalGate:
    """The approval gate of one agent run, as tool middleware. `ask` asks a human (a durable
    run's context; None in memory, where a call that needs approval is refused),
    `messages` returns the run's conversation so far and `cost_so_far` its model cost."""

    def __init__(
        self,
        agent: str,
        *,
        ask: Asker | None,
        messages: Callable[[], Sequence[Message]],
        cost_so_far: CostSoFar,
    ) -> None:
        self.agent = agent
        self.ask = ask
        self.messages = messages
        self.cost_so_far = cost_so_far

    async def __call__(self, inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        tool, values, context = inv.tool, inv.values, inv.context
        if not await needs_approval(tool, values):
            return await call_next(inv)
        if self.ask is None:
            raise ToolDenied(
                f"tool {tool.name!r} needs a human's approval, and only a durable run can wait "
                "for one: run the agent as a job (app.agent) or in a workflow (ctx.agent)"
            )
        step = current_step()  # the tool's step: its key makes the approval's key
        decision = await self.ask.approval(
            _question(self.agent, tool, values),
            approvers=tool.approvers,
            timeout=tool.approval_timeout_s,
            on_timeout="reject",
            context=await self._context(tool, values, context),
            name=f"{step.key}/approval",
        )
        if not decision.approved:
            raise ToolDenied(refusal(decision, tool))
        approved = dataclasses.replace(context, approval=decision)
        return await call_next(dataclasses.replace(inv, context=approved))

    async def _context(
        self, tool: Tool, values: dict[str, Any], context: ToolContext[Any]
    ) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "tool": tool.name,
            "arguments": _jsonable(values),
            "principal": context.principal,
            "reasoning": _reasoning(self.messages()),
            "cost_so_far": await self.cost_so_far(),
        }


async def needs_approval(tool: Tool, values: dict[str, Any]) -> bool:
    """The tool's rule for this call. A rule that raises refuses the call (fail closed)."""
    rule = tool.requires_approval
    if not callable(rule):
        return bool(rule)
    verdict = rule(values)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


def refusal(decision: ApprovalDecision, tool: Tool) -> str:
    """What the model is told when the call was not approved."""
    if decision.timed_out:
        return (
            f"nobody approved this call of {tool.name!r} in time (approval "
            f"{decision.request_id} timed out); it was not run"
        )
    who = decision.decided_by or "an approver"
    return f"rejected by {who}: {decision.comment}" if decision.comment else f"rejected by {who}"


def _question(agent: str, tool: Tool, values: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={json.dumps(_jsonable(v), default=str)}" for k, v in values.items())
    text = f"Allow agent {agent!r} to call {tool.name}({args})?"
    return text if len(text) <= 300 else text[:296] + "…)?"


def _reasoning(messages: Sequence[Message]) -> list[str]:
    """The agent's last few texts: why it is making this call, in its own words."""
    texts = [m.text for m in messages if m.role == "assistant" and m.text.strip()]
    return [t if len(t) <= _MAX_TEXT else t[: _MAX_TEXT - 1] + "…" for t in texts][
        -_REASONING_TURNS:
    ]


NO_COST = {"usd": "0", "model_calls": 0, "tokens": 0}


async def cost_so_far(
    store: MeteringStore, db: Callable[..., Awaitable[Any]], run_id: str
) -> dict[str, Any]:
    """The run's model cost so far, as the approval request shows it."""
    calls: list[ModelCall] = await db(store.model_calls, run_id)
    pusd = sum(c.cost_pusd for c in calls)
    tokens = sum(
        c.input_tokens + c.output_tokens + c.cache_write_tokens + c.cache_read_tokens for c in calls
    )
    return {
        "usd": str((Decimal(pusd) / _PUSD_PER_USD).normalize()),
        "model_calls": len(calls),
        "tokens": tokens,
        "simulated": any(c.simulated for c in calls),
    }


def _jsonable(value: Any) -> Any:
    try:
        data = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        return repr(value)[:_MAX_TEXT]
    text = json.dumps(data, default=str)
    return data if len(text) <= _MAX_TEXT else {"truncated": text[:_MAX_TEXT]}
