"""Provider adapters through the real `anthropic` and `openai` SDKs against local fake servers
that speak the wire formats (rota.testing.fake_providers). No network, no real sleeping:
RetryingModel is given a sleep that only records its delays."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from rota.agents.models.anthropic import AnthropicModel
from rota.agents.models.openai import RAW_ARGUMENTS_KEY, OpenAIChatModel, is_strict_schema
from rota.agents.models.registry import resolve_model
from rota.agents.models.retrying import RetryingModel, parse_retry_after
from rota.agents.types import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)
from rota.errors import ConfigError, MissingApiKey, ProviderError, UnknownModel
from rota.testing import FakeAnthropicServer, FakeOpenAIServer, FakeReply, FakeToolCall

T = TypeVar("T")
KEY = "test-key"

LOOKUP = ToolSpec(
    "lookup_customer",
    "Find a customer by id.",
    {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)
REFUND = ToolSpec(
    "refund",
    "Refund an amount.",
    {
        "type": "object",
        "properties": {"amount_cents": {"type": "integer"}},
        "required": ["amount_cents"],
        "additionalProperties": False,
    },
)
DECISION = {
    "type": "object",
    "properties": {"approve": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["approve", "reason"],
    "additionalProperties": False,
}
# One conversation with every kind of turn: the user's task, an assistant turn with text and
# two tool calls, and the user turn carrying their results (one an error) plus a note.
HISTORY = (
    Message("user", "Refund customer c-1 if eligible."),
    Message(
        "assistant",
        "Let me look.",
        tool_calls=(
            ToolCall("call_1", "lookup_customer", {"id": "c-1"}),
            ToolCall("call_2", "refund", {"amount_cents": 500}),
        ),
    ),
    Message(
        "user",
        "Both done?",
        tool_results=(
            ToolResult("call_1", '{"plan": "pro"}'),
            ToolResult("call_2", "permission denied: billing:write", is_error=True),
        ),
    ),
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def complete(model: Model, request: ModelRequest) -> ModelResponse:
    async def go() -> ModelResponse:
        try:
            return await model.complete(request)
        finally:
            inner = getattr(model, "model", model)  # unwrap a RetryingModel
            await inner.aclose()

    return run(go())


def fails(model: Model, request: ModelRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(model, request)
    return info.value


def anthropic_key(headers: dict[str, str]) -> str | None:
    """The API key as sent: `x-api-key` historically, `Authorization: Bearer` in SDK 2.x."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    return headers.get("authorization", "").removeprefix("Bearer ") or None


def ask(text: str = "hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(
        model="", system="You are terse.", messages=(Message("user", text),), **kwargs
    )


class Sleeps:
    """A sleep that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_COMPATIBLE_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def anthropic_srv() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def openai_srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def claude(srv: FakeAnthropicServer, **kwargs: Any) -> AnthropicModel:
    model = resolve_model("anthropic:claude-test-1", base_url=srv.base_url, api_key=KEY, **kwargs)
    assert isinstance(model, AnthropicModel)
    return model


# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_text_reply(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.reply_text("Hello there.")
    response = complete(claude(anthropic_srv), ask())
    assert response.text == "Hello there."
    assert response.tool_calls == ()
    assert response.stop_reason == "end_turn"
    assert (response.provider, response.model) == ("anthropic", "claude-test-1")
    assert response.request_id is not None and response.request_id.startswith("req_fake_")
    assert response.simulated is False
    sent = anthropic_srv.log[0]
    assert sent.path == "/v1/messages"
    assert anthropic_key(sent.headers) == KEY
    assert sent.body["model"] == "claude-test-1"
    assert sent.body["max_tokens"] == 1024
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_anthropic_tool_use_round_trip(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.reply_tool_call("refund", {"amount_cents": 250}, id="toolu_9", text="Retrying.")
    request = ModelRequest(model="", system="sys", messages=HISTORY, tools=(LOOKUP, REFUND))
    response = complete(claude(anthropic_srv), request)

    assert response.tool_calls == (ToolCall("toolu_9", "refund", {"amount_cents": 250}),)
    assert response.text == "Retrying."
    assert response.stop_reason == "tool_use"
    assert anthropic_srv.requests[0]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Refund customer c-1 if eligible."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "lookup_customer",
                    "input": {"id": "c-1"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "refund",
                    "input": {"amount_cents": 500},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": '{"plan": "pro"}'},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": "permission denied: billing:write",
                    "is_error": True,
                },
                {"type": "text", "text": "Both done?"},
            ],
        },
    ]


def test_anthropic_prompt_caching_markers(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.reply_text("ok")
    request = ModelRequest(
        model="", system="Long instructions.", messages=HISTORY[:1], tools=(LOOKUP, REFUND)
    )
    complete(claude(anthropic_srv), request)
    body = anthropic_srv.requests[0]
    assert body["system"] == [
        {"type": "text", "text": "Long instructions.", "cache_control": {"type": "ephemeral"}}
    ]
    assert [t.get("cache_control") for t in body["tools"]] == [None, {"type": "ephemeral"}]
    assert body["tools"][0] == {
        "name": "lookup_customer",
        "description": "Find a customer by id.",
        "input_schema": LOOKUP.input_schema,
    }


def test_anthropic_usage_is_read_from_the_response(anthropic_srv: FakeAnthropicServer) -> None:
    wire = {
        "input_tokens": 120,
        "output_tokens": 75,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 4096,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    anthropic_srv.reply_text("done", usage=wire)
    response = complete(claude(anthropic_srv), ask())
    assert response.usage == Usage(
        input_tokens=120,
        output_tokens=75,
        cache_write_tokens=2048,
        cache_read_tokens=4096,
        reasoning_tokens=40,
        requests=1,
    )
    assert {k: response.extra["raw_usage"][k] for k in wire} == wire


def test_anthropic_structured_output_native(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.reply_json({"approve": True, "reason": "pro plan"})
    schema = {"type": "object", "properties": {"approve": {"type": "boolean"}}}  # open object
    response = complete(claude(anthropic_srv), ask(output_schema=schema))
    assert json.loads(response.text) == {"approve": True, "reason": "pro plan"}
    body = anthropic_srv.requests[0]
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["additionalProperties"] is False  # closed by the SDK's transform
    assert "tools" not in body


def test_anthropic_structured_output_as_final_answer_tool(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    model = AnthropicModel(
        "claude-test-1", api_key=KEY, base_url=anthropic_srv.base_url, structured_output="tool"
    )
    anthropic_srv.reply_tool_call("final_answer", {"approve": False, "reason": "no"})
    response = complete(model, ask(output_schema=DECISION, tools=(LOOKUP,)))
    assert json.loads(response.text) == {"approve": False, "reason": "no"}
    assert response.tool_calls == ()
    assert response.stop_reason == "end_turn"
    tools = anthropic_srv.requests[0]["tools"]
    assert [t["name"] for t in tools] == ["lookup_customer", "final_answer"]
    assert tools[-1]["input_schema"] == DECISION
    assert tools[-1]["cache_control"] == {"type": "ephemeral"}
    assert "output_config" not in anthropic_srv.requests[0]


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("end_turn", "end_turn"),
        ("stop_sequence", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("refusal", "refusal"),
        ("pause_turn", "other"),
    ],
)
def test_anthropic_stop_reasons(anthropic_srv: FakeAnthropicServer, wire: str, ours: str) -> None:
    anthropic_srv.reply_text("x", stop_reason=wire)
    response = complete(claude(anthropic_srv), ask())
    assert response.stop_reason == ours
    assert response.extra["raw_stop_reason"] == wire


def test_anthropic_temperature_is_sent_when_given(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.reply_text("a")
    anthropic_srv.reply_text("b")
    complete(claude(anthropic_srv), ask(temperature=0.2))
    complete(claude(anthropic_srv), ask())
    assert anthropic_srv.requests[0]["temperature"] == 0.2
    assert "temperature" not in anthropic_srv.requests[1]


# -- errors ---------------------------------------------------------------------------------


def test_429_carries_retry_after_seconds(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.fail(429, retry_after=2)
    error = fails(claude(anthropic_srv), ask())
    assert (error.status, error.retryable, error.retry_after) == (429, True, 2.0)
    assert error.provider == "anthropic"
    assert "rate_limit_error" in str(error)


def test_429_retry_after_ms_wins_over_seconds(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.push(FakeReply.error(429, retry_after=30, retry_after_ms=1500))
    assert fails(claude(anthropic_srv), ask()).retry_after == 1.5


def test_429_retry_after_http_date(anthropic_srv: FakeAnthropicServer) -> None:
    when = email.utils.formatdate(time.time() + 3600, usegmt=True)
    anthropic_srv.fail(429, retry_after=when)
    error = fails(claude(anthropic_srv), ask())
    assert error.retry_after is not None and 3500 < error.retry_after <= 3600


def test_parse_retry_after_forms() -> None:
    now = 1_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": date}, now=lambda: now) == 7.0
    assert parse_retry_after({"retry-after": date}, now=lambda: now + 60) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None


def test_529_overloaded_is_retryable(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.fail(529)
    error = fails(claude(anthropic_srv), ask())
    assert (error.status, error.retryable, error.retry_after) == (529, True, None)
    assert "overloaded_error" in str(error) and "Overloaded" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retryable(anthropic_srv: FakeAnthropicServer, status: int) -> None:
    anthropic_srv.fail(status)
    error = fails(claude(anthropic_srv), ask())
    assert (error.status, error.retryable) == (status, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retryable_and_keep_the_message(
    anthropic_srv: FakeAnthropicServer, status: int
) -> None:
    anthropic_srv.fail(status, message=f"the provider explains {status}")
    error = fails(claude(anthropic_srv), ask())
    assert (error.status, error.retryable) == (status, False)
    assert f"the provider explains {status}" in str(error)
    if status == 401:
        assert "ANTHROPIC_API_KEY" in str(error)


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (b'{"id": "msg_1", "content": [', "application/json", "not valid JSON"),
        (b"<html>502 Bad Gateway</html>", "text/html", "got str"),
        (b'{"id": "msg_1", "type": "message"}', "application/json", "'content'"),
        (
            b'{"type": "message", "model": "m", "content": [], "stop_reason": "end_turn"}',
            "application/json",
            "'usage'",
        ),
        (
            b'{"type": "message", "model": "m", "content": [{"type": "tool_use", "id": "t"}],'
            b' "usage": {"input_tokens": 1, "output_tokens": 1}}',
            "application/json",
            "'name'",
        ),
    ],
)
def test_malformed_body_is_a_clear_non_retryable_error(
    anthropic_srv: FakeAnthropicServer, body: bytes, content_type: str, detail: str
) -> None:
    anthropic_srv.reply_malformed(body, content_type)
    error = fails(claude(anthropic_srv), ask())
    assert error.retryable is False
    assert "malformed response" in str(error)
    assert detail in str(error)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    model = AnthropicModel("claude-test-1", api_key=KEY, base_url=f"http://127.0.0.1:{port}")
    error = fails(model, ask())
    assert error.retryable is True
    assert "could not reach" in str(error)


def test_timeout_is_retryable(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.push(FakeReply(text="too late", latency=2.0))
    model = AnthropicModel(
        "claude-test-1", api_key=KEY, base_url=anthropic_srv.base_url, timeout=0.2
    )
    error = fails(model, ask())
    assert error.retryable is True
    assert "timed out" in str(error)


def test_unscripted_request_gets_a_helpful_400(anthropic_srv: FakeAnthropicServer) -> None:
    error = fails(claude(anthropic_srv), ask())
    assert (error.status, error.retryable) == (400, False)
    assert "nothing scripted" in str(error)


# -- RetryingModel --------------------------------------------------------------------------


def test_retrying_honours_retry_after_and_counts_usage_once(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    anthropic_srv.fail(429, retry_after=2)
    anthropic_srv.reply_text("finally", usage={"input_tokens": 10, "output_tokens": 4})
    sleeps = Sleeps()
    model = RetryingModel(claude(anthropic_srv), sleep=sleeps, base_delay=0.1)
    response = complete(model, ask())
    assert response.text == "finally"
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 2.0
    assert response.usage == Usage(input_tokens=10, output_tokens=4, requests=1)
    assert response.extra["attempts"] == 2
    assert response.extra["retry_after_seen"] == [2.0]
    assert response.extra["retry_delays"] == sleeps.delays
    assert anthropic_srv.calls == 2


def test_retrying_overloaded_then_success(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.fail(529, times=2)
    anthropic_srv.reply_text("ok")
    sleeps = Sleeps()
    response = complete(RetryingModel(claude(anthropic_srv), sleep=sleeps, base_delay=0.5), ask())
    assert response.text == "ok"
    assert response.extra["attempts"] == 3
    # exponential with jitter in [0.5, 1]: 0.5 * 2**0 then 0.5 * 2**1
    assert 0.25 <= sleeps.delays[0] <= 0.5
    assert 0.5 <= sleeps.delays[1] <= 1.0


def test_retrying_500_then_success(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.fail(500)
    openai_srv.reply_text("ok")
    sleeps = Sleeps()
    model = resolve_model("openai:gpt-test", base_url=openai_srv.base_url, api_key=KEY)
    response = complete(RetryingModel(model, sleep=sleeps), ask())
    assert response.text == "ok"
    assert response.extra["attempts"] == 2
    assert len(sleeps.delays) == 1
    assert openai_srv.calls == 2


def test_retrying_gives_up_after_max_attempts_with_the_last_error(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    anthropic_srv.fail(503, message="first")
    anthropic_srv.fail(529, message="second")
    anthropic_srv.fail(500, message="third")
    anthropic_srv.reply_text("never reached")
    sleeps = Sleeps()
    error = fails(RetryingModel(claude(anthropic_srv), max_attempts=3, sleep=sleeps), ask())
    assert error.status == 500 and "third" in str(error)
    assert any("gave up after 3 attempts" in note for note in error.__notes__)
    assert anthropic_srv.calls == 3
    assert len(sleeps.delays) == 2
    assert anthropic_srv.pending == 1


def test_retrying_does_not_retry_a_client_error(anthropic_srv: FakeAnthropicServer) -> None:
    anthropic_srv.fail(400, message="bad schema")
    anthropic_srv.reply_text("never reached")
    sleeps = Sleeps()
    error = fails(RetryingModel(claude(anthropic_srv), sleep=sleeps), ask())
    assert "bad schema" in str(error)
    assert anthropic_srv.calls == 1
    assert sleeps.delays == []


def test_retrying_does_not_sleep_on_a_retry_after_beyond_its_limit(
    anthropic_srv: FakeAnthropicServer,
) -> None:
    anthropic_srv.fail(429, retry_after=600)
    anthropic_srv.reply_text("never reached")
    sleeps = Sleeps()
    error = fails(RetryingModel(claude(anthropic_srv), sleep=sleeps, max_retry_after=60), ask())
    assert error.retry_after == 600
    assert sleeps.delays == []
    assert anthropic_srv.calls == 1


class _AlwaysOverloaded:
    provider = "stub"
    name = "stub"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise ProviderError("stub", f"overloaded #{self.calls}", status=529, retryable=True)

    async def aclose(self) -> None:
        pass


def test_backoff_grows_exponentially_and_is_capped() -> None:
    stub = _AlwaysOverloaded()
    sleeps = Sleeps()
    model = RetryingModel(stub, max_attempts=8, base_delay=1.0, max_delay=10.0, sleep=sleeps)
    error = fails(model, ask())
    assert "overloaded #8" in str(error)
    assert stub.calls == 8
    ceilings = [1, 2, 4, 8, 10, 10, 10]
    assert len(sleeps.delays) == len(ceilings)
    for delay, ceiling in zip(sleeps.delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


# -- OpenAI Chat Completions ----------------------------------------------------------------


def gpt(srv: FakeOpenAIServer, spec: str = "openai:gpt-test") -> Model:
    return resolve_model(spec, base_url=srv.base_url, api_key=KEY)


def test_openai_chat_text_reply(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_text("Hello.")
    response = complete(gpt(openai_srv), ask())
    assert (response.text, response.stop_reason, response.provider) == (
        "Hello.",
        "end_turn",
        "openai",
    )
    assert response.request_id is not None and response.request_id.startswith("req_fake_")
    sent = openai_srv.log[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert sent.body["max_completion_tokens"] == 1024 and "max_tokens" not in sent.body


def test_openai_chat_tool_round_trip(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_tool_calls(
        FakeToolCall("lookup_customer", {"id": "c-2"}, id="call_a"),
        FakeToolCall("refund", {"amount_cents": 1}, id="call_b"),
    )
    request = ModelRequest(model="", system="sys", messages=HISTORY, tools=(LOOKUP, REFUND))
    response = complete(gpt(openai_srv), request)
    assert response.tool_calls == (
        ToolCall("call_a", "lookup_customer", {"id": "c-2"}),
        ToolCall("call_b", "refund", {"amount_cents": 1}),
    )
    assert response.stop_reason == "tool_use"
    body = openai_srv.requests[0]
    assert body["messages"][1:] == [
        {"role": "user", "content": "Refund customer c-1 if eligible."},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_customer", "arguments": '{"id": "c-1"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "refund", "arguments": '{"amount_cents": 500}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"plan": "pro"}'},
        {
            "role": "tool",
            "tool_call_id": "call_2",
            "content": "ERROR: permission denied: billing:write",
        },
        {"role": "user", "content": "Both done?"},
    ]
    # strict only where OpenAI's strict mode accepts the schema as it is
    assert [t["function"].get("strict") for t in body["tools"]] == [None, True]


def test_openai_chat_usage_with_cached_and_reasoning_tokens(openai_srv: FakeOpenAIServer) -> None:
    wire = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_tokens_details": {"cached_tokens": 800},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    openai_srv.reply_text("ok", usage=wire)
    response = complete(gpt(openai_srv), ask())
    # OpenAI counts cached tokens inside prompt_tokens; rota's input_tokens is the rest
    assert response.usage == Usage(
        input_tokens=200, output_tokens=300, cache_read_tokens=800, reasoning_tokens=200
    )
    assert response.extra["raw_usage"] == wire


def test_openai_chat_structured_output(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_json({"approve": True, "reason": "ok"})
    response = complete(gpt(openai_srv), ask(output_schema=DECISION))
    assert json.loads(response.text) == {"approve": True, "reason": "ok"}
    assert openai_srv.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "final_answer", "schema": DECISION, "strict": True},
    }


@pytest.mark.parametrize(
    ("stop", "ours"),
    [("max_tokens", "max_tokens"), ("refusal", "refusal"), ("end_turn", "end_turn")],
)
def test_openai_chat_stop_reasons(openai_srv: FakeOpenAIServer, stop: str, ours: str) -> None:
    openai_srv.reply_text("I won't.", stop_reason=stop)
    response = complete(gpt(openai_srv), ask())
    assert response.stop_reason == ours
    assert response.text == "I won't."


def test_openai_insufficient_quota_is_not_retryable(openai_srv: FakeOpenAIServer) -> None:
    body = {
        "error": {
            "message": "You exceeded your quota.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    openai_srv.push(FakeReply(status=429, raw=json.dumps(body).encode()))
    openai_srv.fail(429, retry_after=3)
    model = gpt(openai_srv)
    quota = fails(model, ask())
    assert (quota.status, quota.retryable) == (429, False)
    assert "You exceeded your quota." in str(quota)
    limited = fails(model, ask())
    assert (limited.retryable, limited.retry_after) == (True, 3.0)


def test_openai_malformed_body(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_malformed(b'{"id": "x", "object": "chat.completion", "choices": []}')
    error = fails(gpt(openai_srv), ask())
    assert error.retryable is False
    assert "malformed response" in str(error) and "choices" in str(error)


# -- OpenAI Responses API -------------------------------------------------------------------


def test_openai_responses_text_and_request_shape(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_text("Hi from responses.")
    response = complete(gpt(openai_srv, "openai-responses:gpt-test"), ask(output_schema=DECISION))
    assert response.text == "Hi from responses."
    assert response.stop_reason == "end_turn"
    sent = openai_srv.log[0]
    assert sent.path == "/v1/responses"
    assert sent.body["instructions"] == "You are terse."
    assert sent.body["input"] == [{"role": "user", "content": "hi"}]
    assert sent.body["store"] is False
    assert sent.body["max_output_tokens"] == 1024
    assert sent.body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "final_answer",
            "schema": DECISION,
            "strict": True,
        }
    }


def test_openai_responses_tool_round_trip(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_tool_call("refund", {"amount_cents": 7}, id="call_z")
    request = ModelRequest(model="", system="", messages=HISTORY, tools=(LOOKUP, REFUND))
    response = complete(gpt(openai_srv, "openai-responses:gpt-test"), request)
    assert response.tool_calls == (ToolCall("call_z", "refund", {"amount_cents": 7}),)
    assert response.stop_reason == "tool_use"
    body = openai_srv.requests[0]
    assert "instructions" not in body
    assert body["input"] == [
        {"role": "user", "content": "Refund customer c-1 if eligible."},
        {"role": "assistant", "content": "Let me look."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup_customer",
            "arguments": '{"id": "c-1"}',
        },
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "refund",
            "arguments": '{"amount_cents": 500}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": '{"plan": "pro"}'},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": "ERROR: permission denied: billing:write",
        },
        {"role": "user", "content": "Both done?"},
    ]
    assert [(t["type"], t["name"], t["strict"]) for t in body["tools"]] == [
        ("function", "lookup_customer", False),
        ("function", "refund", True),
    ]


def test_openai_responses_usage(openai_srv: FakeOpenAIServer) -> None:
    wire = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4000, "cache_write_tokens": 600},
        "output_tokens": 900,
        "output_tokens_details": {"reasoning_tokens": 700},
        "total_tokens": 5900,
    }
    openai_srv.reply_text("ok", usage=wire)
    response = complete(gpt(openai_srv, "openai-responses:gpt-test"), ask())
    assert response.usage == Usage(
        input_tokens=400,
        output_tokens=900,
        cache_read_tokens=4000,
        cache_write_tokens=600,
        reasoning_tokens=700,
    )
    assert response.extra["raw_usage"] == wire


def test_openai_responses_incomplete_is_max_tokens(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_text("cut o", stop_reason="max_tokens")
    response = complete(gpt(openai_srv, "openai-responses:gpt-test"), ask())
    assert (response.text, response.stop_reason) == ("cut o", "max_tokens")


def test_openai_responses_errors_map_like_chat(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.fail(429, retry_after=2)
    openai_srv.fail(401, message="Incorrect API key provided")
    model = gpt(openai_srv, "openai-responses:gpt-test")
    limited = fails(model, ask())
    assert (limited.status, limited.retryable, limited.retry_after) == (429, True, 2.0)
    denied = fails(model, ask())
    assert (denied.status, denied.retryable) == (401, False)
    assert "Incorrect API key provided" in str(denied)


# -- OpenAI-compatible servers (vLLM, Ollama) -----------------------------------------------


def test_openai_compatible_by_base_url(openai_srv: FakeOpenAIServer) -> None:
    openai_srv.reply_text("local")
    model = resolve_model("openai-compatible:llama3.1", base_url=openai_srv.base_url)
    response = complete(model, ask())
    assert (response.text, response.provider, model.provider) == (
        "local",
        "openai-compatible",
        "openai-compatible",
    )
    sent = openai_srv.log[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer not-needed"
    assert sent.body["max_tokens"] == 1024 and "max_completion_tokens" not in sent.body
    assert sent.body["model"] == "llama3.1"


def test_openai_compatible_from_env_and_never_sends_the_openai_key(
    openai_srv: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    openai_srv.reply_text("ok")
    complete(resolve_model("openai-compatible:qwen"), ask())
    assert openai_srv.log[0].headers["authorization"] == "Bearer not-needed"


def test_openai_compatible_quirks(openai_srv: FakeOpenAIServer) -> None:
    """Small local models send broken tool arguments; some servers omit usage or say "stop"
    after a tool call. None of these is a provider failure."""
    openai_srv.handler = lambda body: {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "refund", "arguments": "{amount: 5"},
                        }
                    ],
                },
            }
        ],
    }
    model = resolve_model("openai-compatible:tiny", base_url=openai_srv.base_url)
    response = complete(model, ask(tools=(REFUND,)))
    assert response.tool_calls == (ToolCall("c1", "refund", {RAW_ARGUMENTS_KEY: "{amount: 5"}),)
    assert response.extra["invalid_tool_arguments"] == ["c1"]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage()


def test_is_strict_schema() -> None:
    assert is_strict_schema(DECISION)
    assert not is_strict_schema(LOOKUP.input_schema)  # additionalProperties not false
    nested = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {}}}}
        },
        "required": ["items"],
        "additionalProperties": False,
    }
    assert not is_strict_schema(nested)


# -- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["claude-sonnet", ":claude", "anthropic:", "  :  ", ""])
def test_resolve_model_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(UnknownModel) as info:
        resolve_model(spec)
    assert "provider:model" in str(info.value)


def test_resolve_model_rejects_unknown_providers() -> None:
    with pytest.raises(UnknownModel) as info:
        resolve_model("gemini:pro", api_key=KEY)
    assert "no provider 'gemini'" in str(info.value)
    assert "openai-compatible" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("anthropic:claude-x", "ANTHROPIC_API_KEY"),
        ("openai:gpt-x", "OPENAI_API_KEY"),
        ("openai-responses:gpt-x", "OPENAI_API_KEY"),
    ],
)
def test_missing_key_names_the_variable_when_resolved(spec: str, variable: str) -> None:
    with pytest.raises(MissingApiKey) as info:
        resolve_model(spec)
    assert info.value.variable == variable
    assert variable in str(info.value) and "scripted:" in str(info.value)


def test_keys_come_from_env_or_argument(
    anthropic_srv: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    anthropic_srv.reply_text("a")
    anthropic_srv.reply_text("b")
    complete(resolve_model("anthropic:claude-test-1", base_url=anthropic_srv.base_url), ask())
    complete(
        resolve_model("anthropic:claude-test-1", base_url=anthropic_srv.base_url, api_key="arg"),
        ask(),
    )
    assert [anthropic_key(r.headers) for r in anthropic_srv.log] == ["from-env", "arg"]


def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model("openai-compatible:llama3")
    assert "base_url" in str(info.value) and "OPENAI_BASE_URL" in str(info.value)


def test_scripted_models_come_from_the_scripted_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import rota.agents.models.scripted as scripted

    sentinel = _AlwaysOverloaded()
    asked: list[str] = []

    def fake_get(name: str) -> Model:
        asked.append(name)
        return sentinel

    monkeypatch.setattr(scripted, "get_scripted", fake_get)
    assert resolve_model("scripted:demo") is sentinel
    assert asked == ["demo"]


def test_resolved_kinds(openai_srv: FakeOpenAIServer) -> None:
    assert isinstance(resolve_model("anthropic:c", api_key=KEY), AnthropicModel)
    chat = resolve_model("openai:g", api_key=KEY)
    assert isinstance(chat, OpenAIChatModel) and chat.provider == "openai"
    responses = resolve_model("openai-responses:g", api_key=KEY)
    assert responses.provider == "openai" and getattr(responses, "api", None) == "responses"


# -- the fake servers themselves ------------------------------------------------------------


def test_one_model_serves_several_event_loops(anthropic_srv: FakeAnthropicServer) -> None:
    """A model is defined once at import time; asyncio.run may be called many times."""
    model = claude(anthropic_srv)
    anthropic_srv.reply_text("one")
    anthropic_srv.reply_text("two")
    first = run(model.complete(ask()))
    second = run(model.complete(ask()))
    assert (first.text, second.text) == ("one", "two")
    assert anthropic_srv.calls == 2


def test_handler_serves_many_concurrent_calls(openai_srv: FakeOpenAIServer) -> None:
    lock = threading.Lock()
    state = {"in_flight": 0, "peak": 0}

    def handler(body: dict[str, Any]) -> FakeReply:
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        time.sleep(0.05)
        with lock:
            state["in_flight"] -= 1
        return FakeReply(text=f"echo {body['messages'][-1]['content']}")

    openai_srv.handler = handler
    model = OpenAIChatModel("gpt-test", api_key=KEY, base_url=openai_srv.base_url)

    async def many() -> list[ModelResponse]:
        try:
            return await asyncio.gather(*(model.complete(ask(f"n{i}")) for i in range(40)))
        finally:
            await model.aclose()

    responses = run(many())
    assert sorted(r.text for r in responses) == sorted(f"echo n{i}" for i in range(40))
    assert openai_srv.calls == 40 and len(openai_srv.requests) == 40
    assert state["peak"] > 1  # the server really handled them side by side


def test_latency_callable_sees_each_request(anthropic_srv: FakeAnthropicServer) -> None:
    seen: list[str] = []

    def latency(body: dict[str, Any]) -> float:
        seen.append(body["model"])
        return 0.0

    anthropic_srv.latency = latency
    anthropic_srv.reply_text("ok")
    complete(claude(anthropic_srv), ask())
    assert seen == ["claude-test-1"]
