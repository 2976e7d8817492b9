"""The agent trace of a run, read back from its durable steps: what `GET /api/runs/{id}`
shows (and `rota runs show --json`, under "trace").

An agent run's steps are `{prefix}model#{n}` (the response, with the request under
"request"), `{prefix}tool:{name}` (the ToolResult) and `{prefix}tool:{name}/approval` (a
human's decision). The tree is one node per agent (prefix), holding its model calls in
order; each model call holds the tool calls it asked for, matched to the tool steps that
follow it. Tokens and cost come from the metering records (`ModelCall`), by step key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..clock import iso
from ..model import ModelCall, Step

_MODEL = "model#"
_TOOL = "tool:"
_APPROVAL = "/approval"
PUSD_PER_USD = 10**12


def agent_trace(steps: Sequence[Step], calls: Sequence[ModelCall]) -> list[dict[str, Any]]:
    """One node per agent of the run (empty for a run that made no model call)."""
    metered = {call.step_key: call for call in calls}
    approvals = {s.key[: -len(_APPROVAL)]: s for s in steps if s.key.endswith(_APPROVAL)}
    agents: dict[str, dict[str, Any]] = {}
    pending: list[dict[str, Any]] = []  # the latest model call's tool calls not yet matched
    for step in steps:
        prefix, kind, rest = _split(step.key)
        if kind == "model":
            node = _model_node(step, metered.get(step.key))
            agents.setdefault(prefix, {"prefix": prefix, "model_calls": []})
            agents[prefix]["model_calls"].append(node)
            pending = list(node["tool_calls"])
        elif kind == "tool":
            _attach(pending, rest, step, approvals.get(step.key))
    return list(agents.values())


def _split(key: str) -> tuple[str, str, str]:
    """(prefix, "model" | "tool" | "", rest): `a/model#2` -> ("a/", "model", "2")."""
    if key.endswith(_APPROVAL):
        return "", "", key
    for marker, kind in ((_MODEL, "model"), (_TOOL, "tool")):
        at = key.rfind(marker)
        if at >= 0 and "/" not in key[at:]:
            return key[:at], kind, key[at + len(marker) :]
    return "", "", key


def _model_node(step: Step, metered: ModelCall | None) -> dict[str, Any]:
    data = _object(step.result)
    request, usage, extra = (_object(data.get(key)) for key in ("request", "usage", "extra"))
    return {
        "step": step.key,
        "seq": step.seq,
        "state": step.state,
        "started_at": iso(step.started_at),
        "duration_s": step.finished_at - step.started_at,
        "model": metered.model if metered else request.get("model"),
        "provider": data.get("provider"),
        "response_model": data.get("model"),
        "response_id": data.get("request_id"),
        "system": request.get("system"),
        # Only the messages added since the previous call: the conversation only grows.
        "messages": request.get("messages", []),
        "messages_from": request.get("messages_from", 0),
        "text": data.get("text"),
        "thinking": _thinking(data.get("thinking"), extra),
        "stop_reason": data.get("stop_reason"),
        "usage": _usage(usage, metered),
        "cost_usd": metered.cost_pusd / PUSD_PER_USD if metered else None,
        "error": step.error,
        "tool_calls": [
            {"call_id": c.get("id"), "tool": c.get("name"), "arguments": c.get("arguments")}
            for c in data.get("tool_calls", [])
            if isinstance(c, dict)
        ],
    }


def _object(value: Any) -> dict[str, Any]:
    """A stored JSON object, or {} for anything else (a step written by older code)."""
    return value if isinstance(value, dict) else {}


def _thinking(blocks: Any, extra: dict[str, Any]) -> list[str]:
    """Reasoning text a provider returned and the model step stored (none, if it did not):
    the response's thinking blocks (a redacted block shows as "[redacted]"), else any a
    provider kept under "extra"."""
    if isinstance(blocks, list) and blocks:
        return [_thinking_text(block) for block in blocks]
    found = extra.get("thinking", [])
    return [str(block) for block in found] if isinstance(found, list) else [str(found)]


def _thinking_text(block: Any) -> str:
    if not isinstance(block, dict):
        return str(block)
    if block.get("data") and not block.get("text"):
        return "[redacted]"  # encrypted by the provider: nothing readable to show
    return str(block.get("text", ""))


def _usage(usage: dict[str, Any], metered: ModelCall | None) -> dict[str, int]:
    names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    if metered is not None:
        return {name: getattr(metered, name) for name in (*names, "reasoning_tokens")}
    return {name: int(usage.get(name, 0)) for name in (*names, "reasoning_tokens")}


def _attach(pending: list[dict[str, Any]], tool: str, step: Step, approval: Step | None) -> None:
    """Fill the first unmatched call of this tool with its step's outcome."""
    for call in pending:
        if call["tool"] == tool and "result" not in call:
            break
    else:  # a tool step without a model call that asked for it (should not happen)
        call = {"call_id": None, "tool": tool, "arguments": None}
        pending.append(call)
    result = step.result if isinstance(step.result, dict) else {}
    content = result.get("content")
    is_error = bool(result.get("is_error"))
    call.update(
        step=step.key,
        result=content,
        is_error=is_error,
        started_at=iso(step.started_at),
        duration_s=step.finished_at - step.started_at,
        # middleware refused it (a missing scope, a rejected approval): it never ran
        denied=is_error and str(content).startswith(f"tool {tool!r} was not run"),
        approval=_approval(approval),
    )


def _approval(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    decision = step.result if isinstance(step.result, dict) else {"result": step.result}
    return {"step": step.key, **decision}
