"""`ask_human`: the tool an agent calls when it is unsure, so that a person decides.

    reviewer = Agent(..., tools=[lookup, refund, ask_human(approvers="finance")])

The model calls `ask_human(question, proposal)` with its doubt and its best decision. The
call is an approval gate like any `@tool(requires_approval=True)`: the run parks (holding no
worker) until someone with the role `approver:<group>` decides or the timeout passes. The
model then reads "approved by alice: <comment>" as the tool's result, or, on a rejection or
timeout, the refusal with the approver's comment, and carries on with the human's answer.
Shadow runs never ask (the tool is not read-only): nobody is bothered about a decision that
is only being measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..agents.tools import Tool, ToolContext
from ..durations import Duration

NAME = "ask_human"


async def _ask_human(ctx: ToolContext[Any], question: str, proposal: str) -> str:
    """Ask a person when you are unsure. Runs only once someone approved your proposal.

    Args:
        question: What you are unsure about, in one or two sentences.
        proposal: The decision you would take, for the person to approve or correct.
    """
    decision = ctx.approval  # set by the approval gate (approvals/gate.py)
    if decision is None or not decision.decided_by:
        return "approved"
    comment = f": {decision.comment}" if decision.comment else ""
    return f"approved by {decision.decided_by}{comment}"


def ask_human(approvers: str | Sequence[str], *, timeout: Duration | None = "4h") -> Tool:
    """A tool that parks the run for a human of `approvers` (approver groups)."""
    return Tool(
        _ask_human,
        name=NAME,
        requires_approval=True,
        approvers=approvers,
        approval_timeout=timeout,
    )
