"""The scripted stand-in for the reviewing model, so the demo runs offline.

It follows the agent's instructions turn by turn from what it reads in the conversation:
look the customer up, convert a foreign amount, post one ledger entry when money moves,
answer. Its token counts and latency are fixed, simulated figures (the summary labels them
so); `rota demo --model provider:name` asks a real model instead.
"""

from __future__ import annotations

import json
from typing import Any

from ..agents.models.scripted import ScriptedModel, answer, call, register_scripted
from ..agents.types import ModelRequest

NAME = "demo-payment-reviewer"
SCRIPTED_MODEL = f"scripted:{NAME}"
TOKENS = (1_400, 160)  # (input, output) per simulated model call
LATENCY = (0.05, 0.15)  # seconds per simulated model call
SIGNS = {"invoice.paid": 1, "charge.refunded": -1, "charge.dispute.created": -1}


def register_reviewer() -> None:
    """Register `scripted:demo-payment-reviewer` (afresh: its seeded latencies restart)."""
    register_scripted(
        NAME, ScriptedModel(NAME, fn=_decide, tokens=TOKENS, latency=LATENCY, seed=NAME)
    )


def _decide(request: ModelRequest, turn: int) -> Any:
    event = json.loads(request.messages[0].text)["item"]
    customer = str(event.get("customer", ""))
    results = _tool_results(request)
    if "lookup_customer" not in results:
        return call("lookup_customer", customer=customer)
    currency = str(event.get("currency", "usd"))
    if currency != "usd" and "convert_to_usd" not in results:
        return call("convert_to_usd", amount_cents=event["amount_cents"], currency=currency)
    amount = int(results.get("convert_to_usd", event)["amount_cents"])
    delta = SIGNS.get(str(event.get("type")), 0) * amount
    watched = results["lookup_customer"].get("status") == "fraud_watch"
    if watched and event.get("type") == "charge.refunded":
        delta = 0
    if delta and "post_ledger_entry" not in results:
        reason = f"{event.get('type')} {event.get('id')}"
        return call("post_ledger_entry", customer=customer, delta_cents=delta, reason=reason)
    if _rejected(results.get("post_ledger_entry")):
        delta = 0
    action = "credit" if delta > 0 else "debit" if delta < 0 else "none"
    return answer({"customer": customer, "delta_cents": delta, "action": action})


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
                {"error": result.content} if result.is_error else value
            )
    return found


def _rejected(result: Any) -> bool:
    """A human refused the entry. In a shadow run the tool is "not performed" instead, and
    the instructions say to go on as if it had succeeded."""
    return isinstance(result, dict) and "error" in result and "shadow run" not in result["error"]
