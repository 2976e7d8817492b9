"""The real OTLP/HTTP exporter, configured only by the standard environment variables,
against a receiver on loopback: what arrives decodes as OTLP protobuf, with the spans of one
agent run in one trace and the GenAI metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from rota import Agent, App, ToolContext, observability, tool
from rota.agents.types import ModelRequest
from rota.testing import ScriptedModel, answer, call


class Collector:
    """An OTLP/HTTP receiver on loopback: keeps each request body by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[bytes]:
        return [body for p, _, body in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    c = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.url)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    observability.configure()  # decide again, from these variables
    yield c
    observability.configure()  # shuts down the providers rota built
    c.close()


def test_spans_and_metrics_arrive_over_otlp_http(database_url: str, collector: Collector) -> None:
    @tool
    def weather(ctx: ToolContext, city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    def decide(request: ModelRequest, turn: int) -> Any:
        return call(weather, city="Oslo") if turn == 1 else answer("take no umbrella")

    forecaster = Agent("forecaster", ScriptedModel("fc", fn=decide), "Forecast.", tools=[weather])
    app = App(database_url)
    try:
        app.agent(forecaster)
        handle = app.run_now("forecaster", "Oslo tomorrow?")
        app.drain()
        assert handle.get().state == "SUCCEEDED"
    finally:
        app.close()
    telemetry = observability.active()
    assert telemetry is not None and telemetry.owned  # built from the environment
    telemetry.flush()

    assert {path for path, _, _ in collector.received} == {"/v1/traces", "/v1/metrics"}
    assert {kind for _, kind, _ in collector.received} == {"application/x-protobuf"}
    spans, services = [], set()
    for body in collector.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            services.add(attributes["service.name"])
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert services == {"rota"}
    names = {s.name for s in spans}
    assert {
        "rota.run forecaster",
        "invoke_agent forecaster",
        "chat fc",
        "execute_tool weather",
    } <= names
    assert not any(name.startswith("rota.step") for name in names)  # agent steps: named spans
    assert len(spans) == 5  # the run, the agent, 2 model calls, 1 tool call
    assert len({s.trace_id for s in spans}) == 1
    (tool_span,) = [s for s in spans if s.name == "execute_tool weather"]
    tool_attributes = {a.key: a.value for a in tool_span.attributes}
    assert tool_attributes["gen_ai.tool.name"].string_value == "weather"
    assert tool_attributes["gen_ai.tool.call.id"].string_value
    chats = [s for s in spans if s.name == "chat fc"]
    input_tokens = 0
    for chat in chats:
        attributes = {a.key: a.value for a in chat.attributes}
        assert attributes["gen_ai.operation.name"].string_value == "chat"
        input_tokens += attributes["gen_ai.usage.input_tokens"].int_value
    assert len(chats) == 2 and input_tokens > 0

    metrics = {}
    for body in collector.bodies("/v1/metrics"):
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                metrics.update({m.name: m for m in scope.metrics})
    duration = metrics["gen_ai.client.operation.duration"]
    assert sum(p.count for p in duration.histogram.data_points) == 2
    usage = metrics["gen_ai.client.token.usage"]
    by_type = {
        next(a.value.string_value for a in p.attributes if a.key == "gen_ai.token.type"): p.sum
        for p in usage.histogram.data_points
    }
    assert by_type["input"] == input_tokens
