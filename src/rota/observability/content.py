"""Message content in the GenAI conventions' JSON shapes, always redacted. Put on spans only
when OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..agents.types import Message, ModelResponse, ToolCall
from ..redaction import redactor


def dumps(value: Any) -> str:
    """JSON text with every secret value read in this process redacted."""
    return redactor.redact(json.dumps(value, ensure_ascii=False, default=str))


def input_messages(messages: Sequence[Message]) -> str:
    return dumps([_message(m) for m in messages])


def output_messages(response: ModelResponse) -> str:
    parts = _parts(response.text, response.tool_calls)
    return dumps([{"role": "assistant", "parts": parts, "finish_reason": response.stop_reason}])


def system_instructions(system: str) -> str:
    return dumps([{"type": "text", "content": system}] if system else [])


def _message(message: Message) -> dict[str, Any]:
    parts = _parts(message.text, message.tool_calls)
    parts += [
        {"type": "tool_call_response", "id": r.call_id, "response": r.content}
        for r in message.tool_results
    ]
    return {"role": message.role, "parts": parts}


def _parts(text: str, calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
    parts += [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
    ]
    return parts
