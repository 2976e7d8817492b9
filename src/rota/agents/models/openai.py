"""OpenAI models through the official `openai` SDK: the Chat Completions API (also spoken by
OpenAI-compatible servers such as vLLM and Ollama) and the Responses API.

As for Anthropic, the SDK is built with `max_retries=0` (RetryingModel retries) and nothing
the server sends is trusted to have the documented shape: the SDK does not validate it.

Usage is normalised to rota's convention (see rota.agents.types.Usage and docs/models.md):
OpenAI counts cached prompt tokens inside `prompt_tokens`/`input_tokens`; rota's
`input_tokens` is the uncached rest, so `input + cache_read + cache_write` is the whole
prompt on every provider and each part can be priced at its own rate.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

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

OUTPUT_SCHEMA_NAME = "final_answer"
RAW_ARGUMENTS_KEY = "__raw_arguments__"
_CHAT_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}
_INCOMPLETE: dict[str, StopReason] = {
    "max_output_tokens": "max_tokens",
    "content_filter": "refusal",
}


class _OpenAIBase:
    provider: str
    name: str
    timeout: float
    _api_key: str | None
    _base_url: str | None

    def _init_clients(self) -> None:
        self._clients = PerLoop(self._new_client, _close_client)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, provider={self.provider!r})"

    def _new_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self._base_url, timeout=self.timeout, max_retries=0
        )

    async def aclose(self) -> None:
        """Close the running loop's client now (otherwise: when that loop shuts down)."""
        await self._clients.aclose()

    def _error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, openai.APIError):
            return provider_error(self.provider, exc)
        return self._malformed(f"the response body is not valid JSON ({exc})")

    def _malformed(self, detail: str) -> ProviderError:
        return ProviderError(self.provider, f"malformed response: {detail}")


class OpenAIChatModel(_OpenAIBase):
    """A model behind the Chat Completions API: OpenAI itself (`provider="openai"`), or any
    OpenAI-compatible server given by `base_url` (`provider="openai-compatible"`).

    `max_tokens_param` names the length limit: OpenAI wants `max_completion_tokens` (its
    reasoning models reject `max_tokens`); many compatible servers only know `max_tokens`.
    """

    api = "chat"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        provider: str = "openai",
        max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = (
            "max_completion_tokens"
        ),
    ) -> None:
        self.name = name
        self.provider = provider
        self.timeout = timeout
        self.max_tokens_param = max_tokens_param
        self._api_key = api_key
        self._base_url = base_url
        self._init_clients()

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for this request."""
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        for message in request.messages:
            messages.extend(_chat_messages(message))
        params: dict[str, Any] = {
            "model": request.model or self.name,
            "messages": messages,
            self.max_tokens_param: request.max_tokens,
        }
        if request.tools:
            params["tools"] = [_chat_tool(t) for t in request.tools]
        if request.output_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": OUTPUT_SCHEMA_NAME,
                    "schema": request.output_schema,
                    "strict": is_strict_schema(request.output_schema),
                },
            }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self.build_params(request)
        client = await self._clients.get()
        try:
            completion = await client.chat.completions.create(**params)
        except (openai.APIError, ValueError) as exc:
            raise self._error(exc) from exc
        return self.parse(completion)

    def parse(self, completion: object) -> ModelResponse:
        if not isinstance(completion, ChatCompletion):
            raise self._malformed(f"expected a chat completion object, got {_kind(completion)}")
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise self._malformed("the completion has no 'choices'")
        message = getattr(choices[0], "message", None)
        if message is None:
            raise self._malformed("the first choice has no 'message'")
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        raw_finish = getattr(choices[0], "finish_reason", None)
        stop: StopReason = _CHAT_STOP.get(raw_finish or "", "other")
        text = content if isinstance(content, str) else ""
        if isinstance(refusal, str) and refusal:
            stop, text = "refusal", text or refusal
        calls, invalid = [], []
        for call in getattr(message, "tool_calls", None) or ():
            if getattr(call, "type", "function") != "function":
                continue  # custom tools: rota does not define any
            function = getattr(call, "function", None)
            call_id = _str(self, call, "id")
            arguments, ok = _arguments(_str(self, function, "arguments"))
            if not ok:
                invalid.append(call_id)
            calls.append(
                ToolCall(id=call_id, name=_str(self, function, "name"), arguments=arguments)
            )
        if calls and stop == "end_turn":
            stop = "tool_use"  # some compatible servers say "stop" after tool calls
        usage, raw_usage = self._usage(getattr(completion, "usage", None))
        extra: dict[str, Any] = {"raw_stop_reason": raw_finish, "raw_usage": raw_usage}
        if invalid:
            extra["invalid_tool_arguments"] = invalid
        return ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            stop_reason=stop,
            usage=usage,
            model=getattr(completion, "model", None) or self.name,
            provider=self.provider,
            request_id=getattr(completion, "_request_id", None),
            extra=extra,
        )

    def _usage(self, raw: object) -> tuple[Usage, dict[str, Any]]:
        # Some compatible servers omit usage; rota records zero rather than guessing.
        return _usage(self, raw, "prompt_tokens", "completion_tokens")


class OpenAIResponsesModel(_OpenAIBase):
    """A model behind OpenAI's Responses API. Requests are sent with `store=False`: rota
    sends the whole conversation each step and keeps it itself."""

    api = "responses"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        provider: str = "openai",
    ) -> None:
        self.name = name
        self.provider = provider
        self.timeout = timeout
        self._api_key = api_key
        self._base_url = base_url
        self._init_clients()

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `responses.create` for this request."""
        items: list[dict[str, Any]] = []
        for message in request.messages:
            items.extend(_response_items(message))
        params: dict[str, Any] = {
            "model": request.model or self.name,
            "input": items,
            "max_output_tokens": request.max_tokens,
            "store": False,
        }
        if request.system:
            params["instructions"] = request.system
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                    "strict": is_strict_schema(t.input_schema),
                }
                for t in request.tools
            ]
        if request.output_schema is not None:
            params["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": OUTPUT_SCHEMA_NAME,
                    "schema": request.output_schema,
                    "strict": is_strict_schema(request.output_schema),
                }
            }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self.build_params(request)
        client = await self._clients.get()
        try:
            response = await client.responses.create(**params)
        except (openai.APIError, ValueError) as exc:
            raise self._error(exc) from exc
        return self.parse(response)

    def parse(self, response: object) -> ModelResponse:
        if not isinstance(response, Response):
            raise self._malformed(f"expected a response object, got {_kind(response)}")
        output = getattr(response, "output", None)
        if not isinstance(output, list):
            raise self._malformed("the response has no 'output' list")
        status = getattr(response, "status", None)
        if status == "failed":
            error = getattr(response, "error", None)
            code = getattr(error, "code", None)
            raise ProviderError(
                self.provider,
                f"the response failed: {code}: {getattr(error, 'message', '')}",
                retryable=code in ("server_error", "rate_limit_exceeded"),
            )
        texts: list[str] = []
        refusals: list[str] = []
        calls: list[ToolCall] = []
        invalid: list[str] = []
        thinking: list[Thinking] = []
        for item in output:
            kind = getattr(item, "type", None)
            if kind == "message":
                for part in getattr(item, "content", None) or ():
                    part_kind = getattr(part, "type", None)
                    if part_kind == "output_text":
                        texts.append(_str(self, part, "text"))
                    elif part_kind == "refusal":
                        refusals.append(_str(self, part, "refusal"))
            elif kind == "function_call":
                call_id = _str(self, item, "call_id")
                arguments, ok = _arguments(_str(self, item, "arguments"))
                if not ok:
                    invalid.append(call_id)
                calls.append(
                    ToolCall(id=call_id, name=_str(self, item, "name"), arguments=arguments)
                )
            elif kind == "reasoning":  # only its summary is readable; kept for the trace
                for part in getattr(item, "summary", None) or ():
                    thinking.append(Thinking(_str(self, part, "text")))
            # built-in tool calls carry nothing rota acts on
        incomplete = getattr(getattr(response, "incomplete_details", None), "reason", None)
        stop: StopReason
        if refusals:
            stop = "refusal"
        elif status == "incomplete":
            stop = _INCOMPLETE.get(incomplete or "", "other")
        elif calls:
            stop = "tool_use"
        elif status in ("completed", None):
            stop = "end_turn"
        else:
            stop = "other"
        usage, raw_usage = self._usage(getattr(response, "usage", None))
        extra: dict[str, Any] = {
            "raw_stop_reason": incomplete or status,
            "raw_usage": raw_usage,
        }
        if invalid:
            extra["invalid_tool_arguments"] = invalid
        return ModelResponse(
            text="".join(texts) or "".join(refusals),
            tool_calls=tuple(calls),
            stop_reason=stop,
            usage=usage,
            model=getattr(response, "model", None) or self.name,
            provider=self.provider,
            request_id=getattr(response, "_request_id", None),
            extra=extra,
            thinking=tuple(thinking),
        )

    def _usage(self, raw: object) -> tuple[Usage, dict[str, Any]]:
        return _usage(self, raw, "input_tokens", "output_tokens")


async def _close_client(client: openai.AsyncOpenAI) -> None:
    await client.close()


def _chat_messages(message: Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in message.tool_calls
            ]
        return [out]
    # Tool results answer the assistant turn before, so they come first, one message each.
    messages: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": r.call_id, "content": _result_text(r.content, r.is_error)}
        for r in message.tool_results
    ]
    if message.text or not message.tool_results:
        messages.append({"role": "user", "content": message.text})
    return messages


def _response_items(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if message.role == "assistant":
        if message.text:
            items.append({"role": "assistant", "content": message.text})
        for c in message.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": c.id,
                    "name": c.name,
                    "arguments": json.dumps(c.arguments),
                }
            )
        return items
    for r in message.tool_results:
        items.append(
            {
                "type": "function_call_output",
                "call_id": r.call_id,
                "output": _result_text(r.content, r.is_error),
            }
        )
    if message.text or not message.tool_results:
        items.append({"role": "user", "content": message.text})
    return items


def _result_text(content: str, is_error: bool) -> str:
    # OpenAI has no error flag on tool output; say it in the text the model reads.
    return f"ERROR: {content}" if is_error else content


def _chat_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.input_schema,
    }
    if is_strict_schema(tool.input_schema):
        function["strict"] = True  # off by default in Chat Completions; omitted for old servers
    return {"type": "function", "function": function}


def is_strict_schema(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts this schema as it is: every object closed
    (`additionalProperties: false`) with all its properties required. Strict mode
    guarantees the shape; a schema outside it is sent non-strict rather than rejected."""
    if isinstance(schema, list):
        return all(is_strict_schema(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    for key in ("properties", "$defs", "definitions"):
        children = schema.get(key)
        if isinstance(children, dict) and not all(is_strict_schema(c) for c in children.values()):
            return False
    return all(
        is_strict_schema(schema[k]) for k in ("items", "anyOf", "allOf", "oneOf") if k in schema
    )


def _arguments(raw: str) -> tuple[dict[str, Any], bool]:
    """Tool arguments as a dict. A model (often a small local one) may send invalid JSON;
    that is the model's mistake, not the provider's: the raw text is passed on under
    RAW_ARGUMENTS_KEY so the tool's validation fails and the model is told why."""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {RAW_ARGUMENTS_KEY: raw}, False
    if not isinstance(value, dict):
        return {RAW_ARGUMENTS_KEY: raw}, False
    return value, True


def _str(model: _OpenAIBase, obj: object, name: str) -> str:
    value = getattr(obj, name, None)
    if not isinstance(value, str):
        raise model._malformed(f"field {name!r} is missing or not a string")
    return value


def _usage(
    model: Any, raw: object, prompt_field: str, output_field: str
) -> tuple[Usage, dict[str, Any]]:
    """OpenAI counts cached tokens inside the prompt total; rota's input_tokens is the
    uncached part, so that input, cache write and cache read add up to the prompt. Chat
    Completions names the fields prompt_/completion_tokens, the Responses API input_/
    output_tokens, each with a *_details object."""
    if raw is None:
        return Usage(), {}
    prompt = _int(model, raw, prompt_field)
    prompt_details = getattr(raw, f"{prompt_field}_details", None)
    output_details = getattr(raw, f"{output_field}_details", None)
    cache_read = _opt_int(model, prompt_details, "cached_tokens")
    cache_write = _opt_int(model, prompt_details, "cache_write_tokens")
    usage = Usage(
        input_tokens=max(0, prompt - cache_read - cache_write),
        output_tokens=_int(model, raw, output_field),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_opt_int(model, output_details, "reasoning_tokens"),
    )
    return usage, _dump(raw)


def _int(model: _OpenAIBase, obj: object, name: str) -> int:
    value = getattr(obj, name, None)
    if not isinstance(value, int) or isinstance(value, bool):
        raise model._malformed(f"usage field {name!r} is missing or not an integer")
    return value


def _opt_int(model: _OpenAIBase, obj: object, name: str) -> int:
    if obj is None or getattr(obj, name, None) is None:
        return 0
    return _int(model, obj, name)


def _dump(obj: object) -> dict[str, Any]:
    dump = getattr(obj, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else {}


def _kind(value: object) -> str:
    return "text" if isinstance(value, str) else type(value).__name__


def provider_error(provider: str, exc: openai.APIError) -> ProviderError:
    """One SDK exception as rota's ProviderError, retryable or not."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(provider, "request timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {cause}" if cause else ""
        return ProviderError(provider, f"could not reach {exc.request.url}{detail}", retryable=True)
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderError(provider, f"malformed response: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        code = exc.code or ""
        # A 429 for an exhausted quota will not clear by waiting.
        retryable = is_retryable_status(status) and code != "insufficient_quota"
        hint = " (check the API key)" if status == 401 else ""
        label = " ".join(str(p) for p in (status, code or exc.type or "") if p)
        request_id = f" [request {exc.request_id}]" if exc.request_id else ""
        return ProviderError(
            provider,
            f"{label}: {message}{hint}{request_id}",
            status=status,
            retryable=retryable,
            retry_after=parse_retry_after(exc.response.headers),
        )
    return ProviderError(provider, f"{type(exc).__name__}: {exc}")
