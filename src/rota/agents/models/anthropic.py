"""Claude through the official `anthropic` SDK (Messages API).

The SDK is built with `max_retries=0`: retries are RetryingModel's job, so each attempt is
visible to rota. Prompt caching marks the system prompt and the last tool definition, the
stable prefix an agent re-sends on every step.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import anthropic
from anthropic.types import Message as AnthropicMessage

from rota.agents.models.retrying import PerLoop, is_retryable_status, parse_retry_after
from rota.agents.types import (
    Message,
    ModelRequest,
    ModelResponse,
    StopReason,
    Thinking,
    ToolCall,
    ToolSpec,
    Usage,
)
from rota.errors import ProviderError

PROVIDER = "anthropic"
FINAL_ANSWER_TOOL = "final_answer"
_EPHEMERAL = {"type": "ephemeral"}
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "refusal": "refusal",
}


class AnthropicModel:
    """A Claude model.

    `structured_output` chooses how `ModelRequest.output_schema` is enforced: "native" (the
    default) sends it as `output_config.format` (constrained decoding, supported by current
    Claude models); "tool" offers a `final_answer` tool whose input is the schema, for models
    or gateways without native support. Either way the answer comes back the same: as JSON
    text in `ModelResponse.text`, stop reason "end_turn".
    """

    provider = PROVIDER

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        structured_output: Literal["native", "tool"] = "native",
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.structured_output = structured_output
        self._api_key = api_key
        self._base_url = base_url
        self._clients = PerLoop(self._new_client, _close_client)

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r})"

    def _new_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key, base_url=self._base_url, timeout=self.timeout, max_retries=0
        )

    async def aclose(self) -> None:
        """Close the running loop's client now (otherwise: when that loop shuts down)."""
        await self._clients.aclose()

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for this request."""
        params: dict[str, Any] = {
            "model": request.model or self.name,
            "max_tokens": request.max_tokens,
            "messages": [_message_param(m) for m in request.messages],
        }
        if request.system:
            params["system"] = [
                {"type": "text", "text": request.system, "cache_control": _EPHEMERAL}
            ]
        tools = [_tool_param(t) for t in request.tools]
        if request.output_schema is not None:
            if self.structured_output == "tool":
                tools.append(
                    {
                        "name": FINAL_ANSWER_TOOL,
                        "description": "Give your final answer. Call this exactly once, "
                        "when you are done, with the answer as its input.",
                        "input_schema": request.output_schema,
                    }
                )
            else:
                params["output_config"] = {
                    "format": {"type": "json_schema", "schema": _strict(request.output_schema)}
                }
        if tools:
            tools[-1] = {**tools[-1], "cache_control": _EPHEMERAL}
            params["tools"] = tools
        if request.temperature is not None:
            # Not a typed argument of this SDK version; newer models may reject it.
            params["extra_body"] = {"temperature": request.temperature}
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self.build_params(request)
        client = await self._clients.get()
        try:
            message = await client.messages.create(**params)
        except anthropic.APIError as exc:
            raise provider_error(exc) from exc
        except ValueError as exc:  # the body was not JSON
            raise _malformed(f"the response body is not valid JSON ({exc})") from exc
        return self.parse(message, structured=request.output_schema is not None)

    def parse(self, message: object, *, structured: bool = False) -> ModelResponse:
        """A normalised response from the SDK's message object. The SDK does not validate
        what the server sent, so every field is checked here."""
        if not isinstance(message, AnthropicMessage):
            raise _malformed(f"expected a JSON message object, got {type(message).__name__}")
        content = getattr(message, "content", None)
        if not isinstance(content, list):
            raise _malformed("the message has no 'content' list")
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[Thinking] = []
        for block in content:
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(_field(block, "text", str))
            elif kind == "tool_use":
                calls.append(
                    ToolCall(
                        id=_field(block, "id", str),
                        name=_field(block, "name", str),
                        arguments=_field(block, "input", dict),
                    )
                )
            elif kind == "thinking":
                thinking.append(
                    Thinking(_field(block, "thinking", str), _field(block, "signature", str))
                )
            elif kind == "redacted_thinking":
                thinking.append(Thinking(data=_field(block, "data", str)))
            # server tool blocks and others carry nothing rota acts on
        raw_stop = getattr(message, "stop_reason", None)
        stop: StopReason = _STOP_REASONS.get(raw_stop or "", "other")
        text = "".join(texts)
        if structured and self.structured_output == "tool":
            final = [c for c in calls if c.name == FINAL_ANSWER_TOOL]
            if final:
                calls = [c for c in calls if c.name != FINAL_ANSWER_TOOL]
                text = json.dumps(final[0].arguments)
                stop = "end_turn" if not calls else "tool_use"
        usage, raw_usage = _usage(getattr(message, "usage", None))
        return ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            stop_reason=stop,
            usage=usage,
            model=_field(message, "model", str),
            provider=PROVIDER,
            request_id=getattr(message, "_request_id", None),
            extra={"raw_stop_reason": raw_stop, "raw_usage": raw_usage},
            thinking=tuple(thinking),
        )


async def _close_client(client: anthropic.AsyncAnthropic) -> None:
    await client.close()


def _message_param(message: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    if message.role == "user":
        # tool_result blocks must come first in a user turn
        for result in message.tool_results:
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": result.call_id,
                "content": result.content,
            }
            if result.is_error:
                block["is_error"] = True
            blocks.append(block)
        if message.text:
            blocks.append({"type": "text", "text": message.text})
    else:
        # With extended thinking and tool use, the turn must start with its thinking blocks,
        # unaltered and signed, or the API refuses the request.
        blocks.extend(_thinking_param(t) for t in message.thinking)
        if message.text:
            blocks.append({"type": "text", "text": message.text})
        for call in message.tool_calls:
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            )
    return {"role": message.role, "content": blocks or message.text}


def _thinking_param(block: Thinking) -> dict[str, Any]:
    if block.data:
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


def _tool_param(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema in the subset native structured outputs accept (the SDK's own transform:
    closed objects, unsupported constraints moved into descriptions)."""
    try:
        return anthropic.transform_schema(schema)
    except (ValueError, TypeError):
        return schema


def _usage(raw: object) -> tuple[Usage, dict[str, Any]]:
    if raw is None:
        raise _malformed("the message has no 'usage'")
    details = getattr(raw, "output_tokens_details", None)
    usage = Usage(
        input_tokens=_field(raw, "input_tokens", int),
        output_tokens=_field(raw, "output_tokens", int),
        cache_write_tokens=_optional_int(raw, "cache_creation_input_tokens"),
        cache_read_tokens=_optional_int(raw, "cache_read_input_tokens"),
        reasoning_tokens=_optional_int(details, "thinking_tokens") if details else 0,
    )
    dump = getattr(raw, "model_dump", None)
    raw_dict = dump(exclude_none=True) if callable(dump) else {}
    return usage, raw_dict


def _field(obj: object, name: str, kind: type) -> Any:
    value = getattr(obj, name, None)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _malformed(f"field {name!r} is missing or not {kind.__name__}")
    return value


def _optional_int(obj: object, name: str) -> int:
    value = getattr(obj, name, None)
    if value is None:
        return 0
    if not isinstance(value, int):
        raise _malformed(f"field {name!r} is not an integer")
    return value


def _malformed(detail: str) -> ProviderError:
    return ProviderError(PROVIDER, f"malformed response from the Messages API: {detail}")


def provider_error(exc: anthropic.APIError) -> ProviderError:
    """One SDK exception as rota's ProviderError, retryable or not."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(PROVIDER, f"request timed out ({exc.message})", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {cause}" if cause else ""
        return ProviderError(PROVIDER, f"could not reach {exc.request.url}{detail}", retryable=True)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return _malformed(exc.message)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = exc.type or ""
        message = exc.api_message or exc.message
        retryable = is_retryable_status(status) or kind == "overloaded_error"
        hint = ""
        if status == 401:
            hint = " (check ANTHROPIC_API_KEY)"
        elif status == 404:
            hint = " (is the model name right?)"
        label = f"{status} {kind}".strip()
        request_id = f" [request {exc.request_id}]" if exc.request_id else ""
        return ProviderError(
            PROVIDER,
            f"{label}: {message}{hint}{request_id}",
            status=status,
            retryable=retryable,
            retry_after=parse_retry_after(exc.response.headers),
        )
    return ProviderError(PROVIDER, f"{type(exc).__name__}: {exc}")
