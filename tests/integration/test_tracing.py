"""OpenTelemetry traces and GenAI metrics, on both databases: one webhook -> job ->
escalated agent run with a tool call and a human approval is one trace, with the GenAI
conventions' span names and attributes and no message content; with the content opt-in,
content appears with secret values redacted."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from rota import (
    Agent,
    App,
    FakeClock,
    RunState,
    ToolContext,
    observability,
    on_event,
    on_webhook,
    tool,
)
from rota.agents.types import ModelRequest
from rota.api import create_api
from rota.approvals import ApprovalWebhook
from rota.approvals.notify import JOB as NOTIFY_JOB
from rota.identity import Vault
from rota.observability.settings import CONTENT_ENV
from rota.testing import ScriptedModel, answer, call

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SECRET = "tok-9f8e7d6c5b4a-must-not-leak"
TASK_WORDS = "customer acme-corp ordered the unknown thing"  # message content: never on a span
KEY = base64.b64encode(b"k" * 32).decode()

CONTENT_ATTRIBUTES = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
}


class Receiver:
    """A chat webhook on loopback that accepts every announcement."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exported() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    observability.configure(tracer_provider, MeterProvider(metric_readers=[metrics]))
    yield spans, metrics
    observability.configure()  # back to the environment: off
    tracer_provider.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def escalating_app(database_url: str, receiver: Receiver) -> App:
    """A webhook job that escalates to an agent whose tool needs approval and reads a
    secret, which it returns (so the model, and any captured content, would see it)."""
    app = App(
        database_url,
        clock=FakeClock(1_700_000_000.0),
        approval_webhook=ApprovalWebhook(receiver.url, retries=0),
    )
    app.principal("bot", scopes=[])
    app.principal("alice", kind="user", roles=["approver:ops"])

    @tool(requires_approval=True, approvers="ops")
    def lookup(ctx: ToolContext, customer: str) -> str:
        """Look a customer up in the CRM."""
        return f"customer {customer}: plan pro, crm token {ctx.secret('crm-token')}"

    def decide(request: ModelRequest, turn: int) -> Any:
        if turn == 1:
            return call(lookup, customer="acme-corp")
        return answer({"decision": "refund", "customer": "acme-corp"})

    reviewer = Agent(
        "reviewer",
        ScriptedModel("reviewer", fn=decide),
        "Decide what to do with unknown orders.",
        tools=[lookup],
        output=dict[str, Any],
        run_as="bot",
    )

    @app.workflow(trigger=on_webhook("orders", scheme="none"), escalate_to=reviewer)
    async def orders(ctx: Any, payload: Any) -> Any:
        kind = await ctx.step("classify", lambda: "unknown")
        return ctx.escalate(payload, reason=f"{kind} order")

    Vault(app.store).set("crm-token", SECRET, grants=["bot"])
    return app


def run_scenario(app: App) -> None:
    body = json.dumps({"order": TASK_WORDS}).encode()
    with TestClient(create_api(app)) as client:  # POST /hooks/orders, as a sender would
        answered = client.post(
            "/hooks/orders",
            content=body,
            headers={"traceparent": TRACEPARENT, "content-type": "application/json"},
        )
    assert answered.status_code < 300, answered.text
    (job,) = app.runs(names=["orders"])
    assert job.trace_context is not None and TRACE_ID in job.trace_context
    app.drain()  # the job, the agent up to the approval, the announcement
    (request,) = app.store.approvals()
    app.store.decide_approval(request.id, "alice", True, None, app.clock.now(), via="test")
    app.drain()  # the agent resumes: the tool, the final answer
    runs = {r.name: r for r in app.runs(limit=10)}
    assert {n: r.state for n, r in runs.items()} == {
        "orders": RunState.SUCCEEDED,
        "reviewer": RunState.SUCCEEDED,
        NOTIFY_JOB: RunState.SUCCEEDED,
    }
    # Every run of the chain continues the webhook's trace, across processes too: it is
    # stored with each run.
    assert all(r.trace_context and TRACE_ID in r.trace_context for r in runs.values())


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """The names of a span's ancestors, nearest first."""
    by_id = {s.context.span_id: s for s in spans}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def traced_scenario(
    database_url: str, receiver: Receiver, span_exporter: InMemorySpanExporter
) -> list[ReadableSpan]:
    """Run the scenario on a fresh escalating app; returns the spans it finished."""
    app = escalating_app(database_url, receiver)
    try:
        run_scenario(app)
    finally:
        app.close()
    return list(span_exporter.get_finished_spans())


def every_value(spans: list[ReadableSpan]) -> str:
    texts = [s.name for s in spans]
    for span in spans:
        texts += [str(v) for v in (span.attributes or {}).values()]
        texts.append(span.status.description or "")
        texts += [str(e.attributes) for e in span.events]
    return "\n".join(texts)


def test_one_webhook_to_approval_chain_is_one_trace_without_content(
    database_url: str,
    exported: tuple[InMemorySpanExporter, InMemoryMetricReader],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTA_SECRET_KEY", KEY)
    monkeypatch.delenv(CONTENT_ENV, raising=False)
    span_exporter, metric_reader = exported
    spans = traced_scenario(database_url, receiver, span_exporter)

    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    named = by_name(spans)
    assert {
        "rota.webhook orders",
        "rota.run orders",
        "rota.run reviewer",
        "invoke_agent reviewer",
        "rota.step classify",
        "chat reviewer",
        "execute_tool lookup",
        f"rota.run {NOTIFY_JOB}",
    } <= set(named)
    # One span per durable step: a workflow's step is `rota.step {key}`; an agent's model
    # and tool steps are their chat and execute_tool spans, which name the step.
    assert ancestors(named["rota.step classify"][0], spans)[0] == "rota.run orders"
    steps = {(s.attributes or {}).get("rota.step.key") for s in spans}
    assert {"classify", "model#1", "model#2", "tool:lookup"} <= steps
    # The tree: webhook -> job -> agent run -> agent -> step -> call; the announcement of
    # the approval hangs under the tool call that asked.
    assert ancestors(named["rota.run orders"][0], spans) == ["rota.webhook orders"]
    (model_call, *_) = named["chat reviewer"]
    assert (model_call.attributes or {})["rota.step.key"] == "model#1"
    assert ancestors(model_call, spans) == [
        "invoke_agent reviewer",
        "rota.run reviewer",
        "rota.run orders",
        "rota.webhook orders",
    ]
    notify = named[f"rota.run {NOTIFY_JOB}"][0]
    assert ancestors(notify, spans)[:3] == [
        "execute_tool lookup",
        "invoke_agent reviewer",
        "rota.run reviewer",
    ]
    # The agent's run executed twice: parked on the approval, then resumed.
    first, second = sorted(named["rota.run reviewer"], key=lambda s: s.start_time or 0)
    assert (first.attributes or {})["rota.interrupted"] == "WaitParked"
    assert "rota.interrupted" not in (second.attributes or {})

    chat = dict(model_call.attributes or {})
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "scripted"
    assert chat["gen_ai.request.model"] == "reviewer"
    assert chat["gen_ai.response.model"] == "reviewer"
    assert chat["gen_ai.response.id"] == "scripted-reviewer-1"
    assert chat["gen_ai.agent.name"] == "reviewer"
    assert isinstance(chat["gen_ai.usage.input_tokens"], int) and chat["gen_ai.usage.input_tokens"]
    assert isinstance(chat["gen_ai.usage.output_tokens"], int)
    assert chat["gen_ai.usage.cache_read.input_tokens"] == 0
    assert chat["gen_ai.usage.cache_creation.input_tokens"] == 0
    executed = [dict(s.attributes or {}) for s in named["execute_tool lookup"]]
    assert {a["gen_ai.operation.name"] for a in executed} == {"execute_tool"}
    assert {a["gen_ai.tool.name"] for a in executed} == {"lookup"}
    assert all(a["gen_ai.tool.call.id"] for a in executed)
    agent = dict(named["invoke_agent reviewer"][-1].attributes or {})
    assert (agent["gen_ai.operation.name"], agent["gen_ai.agent.name"]) == (
        "invoke_agent",
        "reviewer",
    )

    # No content: no content attribute, and neither the task nor the secret anywhere.
    assert not any(CONTENT_ATTRIBUTES & set(s.attributes or {}) for s in spans)
    text = every_value(spans)
    assert "acme-corp" not in text and SECRET not in text

    # The GenAI metrics: one duration per model call, tokens by type summed as spent.
    data = metric_reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.count == len(named["chat reviewer"]) == 2
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    spent = [dict(s.attributes or {}) for s in named["chat reviewer"]]
    assert tokens == {
        "input": sum(a["gen_ai.usage.input_tokens"] for a in spent),
        "output": sum(a["gen_ai.usage.output_tokens"] for a in spent),
    }


def test_content_with_the_opt_in_and_secrets_redacted(
    database_url: str,
    exported: tuple[InMemorySpanExporter, InMemoryMetricReader],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTA_SECRET_KEY", KEY)
    monkeypatch.setenv(CONTENT_ENV, "true")
    span_exporter, _ = exported
    spans = traced_scenario(database_url, receiver, span_exporter)
    named = by_name(spans)

    first_call = dict(named["chat reviewer"][0].attributes or {})
    assert "acme-corp" in str(first_call["gen_ai.input.messages"])
    assert json.loads(str(first_call["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Decide what to do with unknown orders."}
    ]
    output = json.loads(str(first_call["gen_ai.output.messages"]))
    assert output[0]["parts"][0]["name"] == "lookup"
    calls = [dict(s.attributes or {}) for s in named["execute_tool lookup"]]
    (ran,) = [a for a in calls if "rota.interrupted" not in a]  # the other parked on approval
    assert json.loads(str(ran["gen_ai.tool.call.arguments"])) == {"customer": "acme-corp"}
    assert "crm token [redacted:crm-token]" in str(ran["gen_ai.tool.call.result"])
    last_call = dict(named["chat reviewer"][-1].attributes or {})
    assert "[redacted:crm-token]" in str(last_call["gen_ai.input.messages"])
    assert SECRET not in every_value(spans)


def test_without_a_provider_nothing_is_wrapped_and_the_traceparent_is_kept(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in observability.settings.ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    observability.configure()
    assert observability.active() is None
    model = ScriptedModel("plain", script=[])
    assert observability.traced_model(model, "a") is model
    assert observability.tool_middleware("a") == ()
    assert observability.run_middleware() == []
    app = App(sqlite_url)
    try:

        @app.job(trigger=on_webhook("orders", scheme="none"))
        def orders(ctx: Any, payload: Any) -> None:
            pass

        sent = app.receive_webhook("orders", {"TraceParent": TRACEPARENT.upper()}, b"{}")
        assert sent.runs[0].get().trace_context == TRACEPARENT
        garbage = app.receive_webhook("orders", {"traceparent": "00-zz-1-01"}, b"[1]")
        assert garbage.runs[0].get().trace_context is None
    finally:
        app.close()


def test_off_by_default_without_importing_opentelemetry(tmp_path: Any) -> None:
    """No OTEL_* variable: a worker composes and runs an agent without loading OpenTelemetry."""
    script = f"""
import sys
from rota import Agent, App
from rota.testing import ScriptedModel, answer
app = App("sqlite:///{tmp_path / "off.db"}")
app.agent(Agent("a", ScriptedModel("m", script=[answer("ok")]), "Answer."))
handle = app.run_now("a", "hi")
app.drain()
assert handle.get().state == "SUCCEEDED"
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_shadow_run_and_an_emitted_event_join_the_trace_of_the_run_that_made_them(
    database_url: str,
    exported: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    span_exporter, _ = exported
    reviewer = Agent(
        "shadow-reviewer",
        ScriptedModel("shadow", script=[answer({"amount": 1})]),
        "Decide.",
        output=dict[str, Any],
    )
    app = App(database_url, clock=FakeClock(1_700_000_000.0))
    try:

        @app.job(trigger=on_webhook("bills", scheme="none"), escalate_to=reviewer, shadow=1.0)
        def bills(ctx: Any, payload: Any) -> Any:
            app.emit("bill.handled", {"n": 1})
            return {"amount": 1}

        @app.job(trigger=on_event("bill.handled"))
        def handled(ctx: Any, payload: Any) -> None:
            pass

        app.receive_webhook("bills", {"traceparent": TRACEPARENT}, b'{"n": 1}')
        app.drain()
        runs = {r.name: r for r in app.runs(limit=10)}
        assert set(runs) == {"bills", "shadow-reviewer", "handled"}
        assert all(r.state == RunState.SUCCEEDED for r in runs.values())
    finally:
        app.close()
    spans = list(span_exporter.get_finished_spans())
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    named = by_name(spans)
    job_span = named["rota.run bills"][0].context.span_id
    for child in ("rota.run shadow-reviewer", "rota.run handled"):
        (span,) = named[child]
        assert span.parent is not None and span.parent.span_id == job_span, child
