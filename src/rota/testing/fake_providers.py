"""Local stand-ins for the Anthropic and OpenAI HTTP APIs, for tests and benchmarks.

Each is a real HTTP server on 127.0.0.1 (ephemeral port) that speaks the provider's wire
format, so rota's adapters are exercised through the real SDKs:

    with FakeAnthropicServer() as srv:
        srv.reply_text("hello", usage={"input_tokens": 12, "output_tokens": 3})
        model = resolve_model("anthropic:claude-test", base_url=srv.base_url, api_key="k")
        ...
        assert srv.requests[0]["system"][0]["cache_control"] == {"type": "ephemeral"}

What the server answers is scripted. Replies pushed with `reply_text`, `reply_json`,
`reply_tool_call`, `fail` or `reply_malformed` are served in order, one per request;
when none is queued, `srv.handler(request_json)` is asked (for many concurrent calls);
with neither, the server answers 400 saying so. A reply is provider-neutral (`FakeReply`)
and is rendered in the format of the endpoint that was called, so one reply works for
OpenAI's Chat Completions and Responses APIs alike. `usage=` is given in the endpoint's
own wire format and merged over plausible defaults.

A server made with `usage=` reports that usage for every reply (a reply's own `usage=` still
wins): a mapping, or a function of the request body, e.g. to report the most prompt tokens a
budget's bound allows for each request:

    srv = FakeAnthropicServer(usage=lambda body: {"input_tokens": bound(body)})

`srv.requests` holds every request body (parsed JSON), `srv.log` the same with path and
headers, `srv.calls` counts requests; all are safe to read from any thread. Pass
`record=False` for long benchmarks.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

Latency = float | Callable[[dict[str, Any]], float] | None
# Usage to report for every reply: fixed fields, or fields computed from the request body.
UsageRule = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] | None


@dataclass(frozen=True)
class FakeToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # generated when None


@dataclass(frozen=True)
class FakeThinking:
    """A reasoning block of an Anthropic reply: `{"type": "thinking", "thinking": text,
    "signature": signature}`, or, with `data`, `{"type": "redacted_thinking", "data": data}`.
    OpenAI's Responses API renders the text as a reasoning item's summary; Chat Completions
    does not render it."""

    text: str = ""
    signature: str = "fake-signature"
    data: str | None = None


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer. `stop_reason` is rota's vocabulary (end_turn, tool_use,
    max_tokens, refusal) and is translated per endpoint; any other string is sent as is.
    `raw` is sent verbatim as the body (for malformed responses)."""

    status: int = 200
    text: str = ""
    tool_calls: tuple[FakeToolCall, ...] = ()
    stop_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    message: str | None = None  # error message, for status >= 400
    error_type: str | None = None  # error type, for status >= 400
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"
    latency: float | None = None
    thinking: tuple[FakeThinking, ...] = ()  # rendered before the text

    @classmethod
    def tool_call(
        cls, name: str, arguments: dict[str, Any], *, id: str | None = None, **kwargs: Any
    ) -> FakeReply:
        return cls(tool_calls=(FakeToolCall(name, arguments, id),), **kwargs)

    @classmethod
    def error(
        cls,
        status: int,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FakeReply:
        h = dict(headers or {})
        if retry_after is not None:
            h["retry-after"] = _header_number(retry_after)
        if retry_after_ms is not None:
            h["retry-after-ms"] = _header_number(retry_after_ms)
        return cls(status=status, message=message, error_type=error_type, headers=h)

    @classmethod
    def malformed(
        cls, body: bytes = b'{"id": "broken", "content": [', content_type: str = "application/json"
    ) -> FakeReply:
        return cls(raw=body, content_type=content_type)


Handler = Callable[[dict[str, Any]], "FakeReply | str | dict[str, Any]"]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _FakeServer:
    """The HTTP plumbing and scripting shared by both fakes; subclasses render replies."""

    name = "fake"
    request_id_header = "request-id"
    paths: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        latency: Latency = None,
        record: bool = True,
        host: str = "127.0.0.1",
        usage: UsageRule = None,
    ) -> None:
        self.latency = latency
        self.usage = usage
        self.record = record
        self.handler: Handler | None = None
        self.requests: list[dict[str, Any]] = []
        self.log: list[RecordedRequest] = []
        self._host = host
        self._queue: deque[FakeReply] = deque()
        self._lock = threading.Lock()
        self._calls = 0
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self._host, 0), _make_handler(self))
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"{type(self).__name__}:{httpd.server_address[1]}"
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running; use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the SDK (or rota's resolve_model) as `base_url`."""
        return self.origin

    # -- scripting -------------------------------------------------------------------------

    def push(self, *replies: FakeReply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def reply_text(self, text: str, **kwargs: Any) -> None:
        """Queue a text answer; kwargs are FakeReply fields (usage, stop_reason, model...)."""
        self.push(FakeReply(text=text, **kwargs))

    def reply_json(self, value: Any, **kwargs: Any) -> None:
        """Queue a structured answer: `value` as JSON text."""
        self.push(FakeReply(text=json.dumps(value), **kwargs))

    def reply_tool_call(
        self, name: str, arguments: dict[str, Any], *, id: str | None = None, **kwargs: Any
    ) -> None:
        self.push(FakeReply.tool_call(name, arguments, id=id, **kwargs))

    def reply_tool_calls(self, *calls: FakeToolCall, text: str = "", **kwargs: Any) -> None:
        self.push(FakeReply(text=text, tool_calls=tuple(calls), **kwargs))

    def fail(
        self,
        status: int,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
        error_type: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue `times` error answers in the provider's error format."""
        reply = FakeReply.error(
            status,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            message=message,
            error_type=error_type,
        )
        self.push(*([reply] * times))

    def reply_malformed(
        self, body: bytes | None = None, content_type: str = "application/json"
    ) -> None:
        """Queue a 200 whose body is not what the API documents (by default: cut-off JSON)."""
        self.push(
            FakeReply.malformed(body, content_type) if body is not None else FakeReply.malformed()
        )

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    # -- serving ---------------------------------------------------------------------------

    def _next(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> FakeReply:
        with self._lock:
            self._calls += 1
            if self.record:
                self.requests.append(body)
                self.log.append(RecordedRequest(path, headers, body))
            reply = self._queue.popleft() if self._queue else None
            handler = self.handler
        if reply is not None:
            return reply
        if handler is None:
            return FakeReply.error(
                400,
                message=f"{type(self).__name__} has nothing scripted for this request: "
                "queue a reply (reply_text, reply_tool_call, fail...) or set .handler",
                error_type="invalid_request_error",
            )
        answer = handler(body)
        if isinstance(answer, FakeReply):
            return answer
        if isinstance(answer, str):
            return FakeReply(text=answer)
        return FakeReply(raw=json.dumps(answer).encode())

    def _delay(self, reply: FakeReply, body: dict[str, Any]) -> float:
        if reply.latency is not None:
            return reply.latency
        if callable(self.latency):
            return float(self.latency(body))
        return float(self.latency or 0.0)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def given_usage(self, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        """The usage fields this reply must report: the server's `usage=` (computed from the
        request body when it is a function), then the reply's own `usage=` over it."""
        rule = self.usage
        given = dict(rule(body) if callable(rule) else rule or {})
        return {**given, **(reply.usage or {})}

    def render(
        self, path: str, body: dict[str, Any], reply: FakeReply
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The JSON body (and extra headers) of a successful reply; per provider."""
        raise NotImplementedError

    def render_error(self, reply: FakeReply) -> dict[str, Any]:
        raise NotImplementedError


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a benchmark opens many connections at once
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test, a cancelled benchmark) closes its socket
        # while a reply is pending: expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _make_handler(server: _FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the SDKs pool connections
        timeout = 60  # an idle kept-alive connection frees its thread after this
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (~40 ms)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if path not in server.paths:
                self._send_error(FakeReply.error(404, message=f"no route {path}"))
                return
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self._send_error(FakeReply.error(400, message="request body is not JSON"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server._next(path, headers, body)
            delay = server._delay(reply, body)
            if delay > 0:
                time.sleep(delay)
            if reply.status >= 400:
                self._send_error(reply)
            elif reply.raw is not None:
                self._send(reply.status, reply.raw, reply.content_type, reply.headers)
            else:
                data, extra = server.render(path, body, reply)
                self._send(
                    reply.status,
                    json.dumps(data).encode(),
                    reply.content_type,
                    {**extra, **reply.headers},
                )

        def _send_error(self, reply: FakeReply) -> None:
            if reply.raw is not None:
                self._send(reply.status, reply.raw, reply.content_type, reply.headers)
                return
            data = server.render_error(reply)
            self._send(reply.status, json.dumps(data).encode(), "application/json", reply.headers)

        def _send(
            self, status: int, payload: bytes, content_type: str, headers: Mapping[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.send_header(server.request_id_header, server.new_id("req_fake_"))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


# -- Anthropic -----------------------------------------------------------------------------

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ANTHROPIC_MESSAGES = {
    "overloaded_error": "Overloaded",
    "rate_limit_error": "This request would exceed the rate limit for your organization.",
    "api_error": "Internal server error",
}


class FakeAnthropicServer(_FakeServer):
    """`POST /v1/messages`, answering message objects with text/tool_use blocks, the usage
    fields including prompt-cache counts, and a `request-id` header. `fail(529)` answers
    Anthropic's overloaded_error."""

    name = "anthropic"
    request_id_header = "request-id"
    paths = ("/v1/messages",)

    def render(
        self, path: str, body: dict[str, Any], reply: FakeReply
    ) -> tuple[dict[str, Any], dict[str, str]]:
        content: list[dict[str, Any]] = [_anthropic_thinking(t) for t in reply.thinking]
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or self.new_id("toolu_fake_"),
                    "name": call.name,
                    "input": call.arguments,
                }
            )
        stop = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
        usage = {
            "input_tokens": _estimate_tokens(body),
            "output_tokens": _output_estimate(reply),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
            **self.given_usage(body, reply),
        }
        message = {
            "id": self.new_id("msg_fake_"),
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        return message, {}

    def render_error(self, reply: FakeReply) -> dict[str, Any]:
        kind = reply.error_type or _ANTHROPIC_ERRORS.get(
            reply.status, "api_error" if reply.status >= 500 else "invalid_request_error"
        )
        message = reply.message or _ANTHROPIC_MESSAGES.get(kind, f"fake {kind}")
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": self.new_id("req_fake_"),
        }


def _anthropic_thinking(block: FakeThinking) -> dict[str, Any]:
    if block.data is not None:
        return {"type": "redacted_thinking", "data": block.data}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


# -- OpenAI --------------------------------------------------------------------------------

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}
_CHAT_FINISH = {
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}


class FakeOpenAIServer(_FakeServer):
    """`POST /v1/chat/completions` and `POST /v1/responses`, answering chat completions
    and response objects with their usage details (cached and reasoning tokens) and an
    `x-request-id` header. `base_url` includes `/v1`, as the openai SDK expects."""

    name = "openai"
    request_id_header = "x-request-id"
    paths = ("/v1/chat/completions", "/v1/responses")

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def render(
        self, path: str, body: dict[str, Any], reply: FakeReply
    ) -> tuple[dict[str, Any], dict[str, str]]:
        if path.endswith("/responses"):
            return self._response(body, reply), {}
        return self._chat(body, reply), {}

    def _chat(self, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
        }
        if reply.stop_reason == "refusal":
            message["content"], message["refusal"] = None, reply.text or "I can't help with that."
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or self.new_id("call_fake_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in reply.tool_calls
            ]
        stop = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
        prompt = _estimate_tokens(body)
        completion = _output_estimate(reply)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            **self.given_usage(body, reply),
        }
        return {
            "id": self.new_id("chatcmpl-fake"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model", "gpt-fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _CHAT_FINISH.get(stop, stop),
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    def _response(self, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        summaries = [
            {"type": "summary_text", "text": t.text} for t in reply.thinking if t.data is None
        ]
        if summaries:  # a reasoning item: its summary is all an API client can read
            output.append(
                {"type": "reasoning", "id": self.new_id("rs_fake_"), "summary": summaries}
            )
        if reply.text:
            part = (
                {"type": "refusal", "refusal": reply.text}
                if reply.stop_reason == "refusal"
                else {"type": "output_text", "text": reply.text, "annotations": []}
            )
            output.append(
                {
                    "type": "message",
                    "id": self.new_id("msg_fake_"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [part],
                }
            )
        for call in reply.tool_calls:
            output.append(
                {
                    "type": "function_call",
                    "id": self.new_id("fc_fake_"),
                    "call_id": call.id or self.new_id("call_fake_"),
                    "name": call.name,
                    "arguments": json.dumps(call.arguments),
                    "status": "completed",
                }
            )
        status, incomplete = "completed", None
        if reply.stop_reason == "max_tokens":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        elif reply.stop_reason not in (None, "end_turn", "tool_use", "refusal"):
            status = reply.stop_reason
        prompt = _estimate_tokens(body)
        completion = _output_estimate(reply)
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
            **self.given_usage(body, reply),
        }
        return {
            "id": self.new_id("resp_fake_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "incomplete_details": incomplete,
            "error": None,
            "model": reply.model or body.get("model", "gpt-fake"),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "usage": usage,
        }

    def render_error(self, reply: FakeReply) -> dict[str, Any]:
        kind, code = _OPENAI_ERRORS.get(
            reply.status, ("server_error" if reply.status >= 500 else "invalid_request_error", None)
        )
        kind = reply.error_type or kind
        return {
            "error": {
                "message": reply.message or f"fake {reply.status} {kind}",
                "type": kind,
                "param": None,
                "code": code,
            }
        }


def _estimate_tokens(body: dict[str, Any]) -> int:
    """A deterministic stand-in for the prompt's token count (about 4 characters a token)."""
    return max(1, len(json.dumps(body, separators=(",", ":"))) // 4)


def _output_estimate(reply: FakeReply) -> int:
    return max(1, len(reply.text) // 4) + 20 * len(reply.tool_calls)


def _header_number(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
