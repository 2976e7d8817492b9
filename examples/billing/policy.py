"""A deterministic stand-in for the reviewing model, so the example runs offline.

It does what the instructions ask, turn by turn, from what it reads in the conversation:
look up the subscription, compute the amount, create a billing event when money changes
hands, answer. A real model replaces it with BILLING_MODEL=...; the loop, the tools, the
approvals and the audit log are the same either way.
"""

from __future__ import annotations

import json
from typing import Any

from rota.agents.types import ModelRequest
from rota.testing import ScriptedModel, answer, call

LAST_WEEK = 7  # days: the policy the instructions state, which the job does not know


def scripted_reviewer() -> ScriptedModel:
    return ScriptedModel("billing-reviewer", fn=_decide, tokens=(900, 120))


def _decide(request: ModelRequest, turn: int) -> Any:
    task = json.loads(request.messages[0].text)
    event = task["item"]
    customer = event.get("customer", "")
    results = _tool_results(request)
    if turn == 1:
        return call("query_subscription", customer=customer)
    sub = results.get("query_subscription")
    if not isinstance(sub, dict):  # no such customer: nothing to bill
        return answer({"customer": customer, "amount_cents": 0, "action": "none"})
    if "calculate_delta" not in results:
        return call(
            "calculate_delta",
            customer=customer,
            to_plan=event.get("to_plan") or sub["plan"],
            seats=event.get("seats"),
        )
    amount = int(results["calculate_delta"]["amount_cents"])
    if amount < 0 and int(sub["days_left"]) < LAST_WEEK:  # no credit in a cycle's last week
        return answer({"customer": customer, "amount_cents": 0, "action": "none"})
    if amount and "create_billing_event" not in results:
        reason = f"{event.get('type', 'change')}: {task.get('reason', 'review')}"
        return call("create_billing_event", customer=customer, amount_cents=amount, reason=reason)
    action = "charge" if amount > 0 else "credit" if amount < 0 else "none"
    if _rejected(results.get("create_billing_event")):
        amount, action = 0, "none"
    return answer({"customer": customer, "amount_cents": amount, "action": action})


def _tool_results(request: ModelRequest) -> dict[str, Any]:
    """The latest result of each tool called so far, parsed from JSON where it is JSON."""
    names = {c.id: c.name for m in request.messages for c in m.tool_calls}
    found: dict[str, Any] = {}
    for message in request.messages:
        for result in message.tool_results:
            try:
                value: Any = json.loads(result.content)
            except ValueError:
                value = result.content
            found[names.get(result.call_id, "?")] = (
                value if not result.is_error else {"error": result.content}
            )
    return found


def _rejected(result: Any) -> bool:
    """The billing event was refused (a human rejected it). In a shadow run the tool is
    "not performed", and the instructions say to go on as if it had succeeded."""
    return isinstance(result, dict) and "error" in result and "shadow run" not in result["error"]
