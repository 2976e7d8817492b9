"""What the Approvals inbox shows of one request: the question and its context, the run's
recent reasoning (the last model calls' thinking and texts, read back from its durable
steps as the run page's trace is) and what its model calls cost so far.

Read in one pass on a database thread (`inbox`), so a page is one round of store reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ...agentloop.trace import agent_trace
from ...storage.approval_records import PENDING, STATUSES, ApprovalRequest, may_decide
from ...storage.base import Store
from ...storage.principals import Principal
from ..auth import holds_role

REASONING_CALLS = 3  # model calls whose thinking and text the inbox shows
MAX_SHOWN = 1000  # characters of each reasoning text, and of the context's JSON
PENDING_SHOWN = 100
HISTORY_SHOWN = 50
HISTORY = tuple(s for s in STATUSES if s != PENDING)
_PUSD_PER_USD = Decimal(10) ** 12
_CONTEXT_SHOWN_APART = ("reasoning", "cost_so_far")  # shown in their own sections


@dataclass(frozen=True)
class Thought:
    """One piece of the agent's reasoning: "thinking" (a reasoning block) or "said" (text)."""

    kind: str
    text: str


@dataclass(frozen=True)
class Cost:
    """The run's model calls so far: their number, tokens and list-price USD."""

    usd: Decimal
    model_calls: int
    tokens: int
    simulated: bool


@dataclass(frozen=True)
class Card:
    """A request as the inbox shows it, and whether the signed-in principal may decide it."""

    request: ApprovalRequest
    decidable: bool
    reasoning: list[Thought] = field(default_factory=list)
    cost: Cost | None = None
    context_json: str = ""


@dataclass(frozen=True)
class Inbox:
    pending: list[Card]
    history: list[ApprovalRequest]


def inbox(store: Store, principal: Principal, history: Sequence[str]) -> Inbox:
    """The pending requests the principal may see (a viewer sees all, anyone else those it
    may decide, as GET /api/approvals), with their reasoning and cost, and the decided ones
    in `history` statuses, newest first."""
    sees_all = holds_role(principal, "viewer")
    pending = store.approvals(statuses=(PENDING,), limit=PENDING_SHOWN if sees_all else 1000)
    decided = store.approvals(statuses=history, limit=HISTORY_SHOWN if sees_all else 1000)
    if not sees_all:
        pending = [r for r in pending if may_decide(principal, r.approvers)][:PENDING_SHOWN]
        decided = [r for r in decided if may_decide(principal, r.approvers)][:HISTORY_SHOWN]
    return Inbox([card(store, principal, r) for r in pending], decided)


def card(store: Store, principal: Principal, request: ApprovalRequest) -> Card:
    calls = store.model_calls(request.run_id)
    trace = agent_trace(store.steps(request.run_id), calls)
    tokens = sum(
        c.input_tokens + c.output_tokens + c.cache_write_tokens + c.cache_read_tokens for c in calls
    )
    cost = Cost(
        usd=Decimal(sum(c.cost_pusd for c in calls)) / _PUSD_PER_USD,
        model_calls=len(calls),
        tokens=tokens,
        simulated=any(c.simulated for c in calls),
    )
    return Card(
        request=request,
        decidable=may_decide(principal, request.approvers),
        reasoning=recent_reasoning(trace) or _asked_with(request.context),
        cost=cost,
        context_json=_context_json(request.context),
    )


def recent_reasoning(trace: Sequence[dict[str, Any]]) -> list[Thought]:
    """The thinking and texts of the run's last few model calls, oldest first."""
    calls = [call for agent in trace for call in agent.get("model_calls", [])]
    calls.sort(key=lambda call: call.get("seq", 0))
    found: list[Thought] = []
    for call in calls[-REASONING_CALLS:]:
        found += [Thought("thinking", _cut(t)) for t in call.get("thinking", []) if t.strip()]
        text = call.get("text")
        if isinstance(text, str) and text.strip():
            found.append(Thought("said", _cut(text)))
    return found


def _asked_with(context: Any) -> list[Thought]:
    """The reasoning an approval gate stored with the request, when the trace has none."""
    texts = context.get("reasoning") if isinstance(context, dict) else None
    if not isinstance(texts, list):
        return []
    return [Thought("said", _cut(str(t))) for t in texts if str(t).strip()]


def _context_json(context: Any) -> str:
    if isinstance(context, dict):
        context = {k: v for k, v in context.items() if k not in _CONTEXT_SHOWN_APART}
    if not context:
        return ""
    return _cut(json.dumps(context, indent=2, sort_keys=True, default=str))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
