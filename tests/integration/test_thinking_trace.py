"""A model's thinking reaches the agent trace, on both databases: an agent run against the
fake Anthropic server (through the real SDK) whose first reply thinks, then calls a tool.
The model step stores the thinking blocks, `GET /api/runs/{id}` shows their text (a secret
in it redacted, like any stored text), and the next request carries the blocks back,
signatures included, at the start of the assistant turn, as the Messages API requires.
OpenAI's Responses API: the reasoning summaries are kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from rota import Agent, App, Price, ToolContext, tool
from rota.agents.models.anthropic import AnthropicModel
from rota.agents.models.openai import OpenAIResponsesModel
from rota.agents.types import Message, ModelRequest, Thinking, response_from_json, to_json
from rota.api import create_api
from rota.identity import admin, tokens
from rota.redaction import redactor
from rota.testing import (
    FakeAnthropicServer,
    FakeOpenAIServer,
    FakeReply,
    FakeThinking,
    FakeToolCall,
)

SECRET = "sk-live-thinking-0123456789"
THOUGHT = "The customer is acme; I should look up its plan first."
SIGNATURE = "EqQBCkgIARABGAIiQL-signature-of-the-first-block"


@dataclass
class Ran:
    detail: dict[str, Any]
    step: Any  # the stored model#1 step, as the store reads it back
    requests: list[dict[str, Any]]


@pytest.fixture
def ran(database_url: str) -> Iterator[Ran]:
    redactor.register("crm_key", SECRET)
    app = App(database_url)
    app.principal("watcher", roles=["viewer"])

    @tool
    def lookup(ctx: ToolContext, customer_id: str) -> str:
        """Look up a customer."""
        return f"plan of {customer_id}: gold"

    with FakeAnthropicServer() as srv:
        srv.push(
            FakeReply(
                thinking=(
                    FakeThinking(THOUGHT, signature=SIGNATURE),
                    FakeThinking(f"The key {SECRET} is not needed.", signature="sig-2"),
                    FakeThinking(data="opaque-encrypted-reasoning"),
                ),
                tool_calls=(FakeToolCall("lookup", {"customer_id": "acme"}, id="toolu_1"),),
            )
        )
        srv.reply_text("acme is on gold")
        model = AnthropicModel("claude-test-1", api_key="k", base_url=srv.base_url)
        app.agent(Agent("reviewer", model, "Review.", tools=[lookup], price=Price(3, 15)))
        try:
            run_id = app.run_now("reviewer", {"customer": "acme"}).id
            app.drain()
            issued = tokens.issue(app.store, "watcher", admin.Actor("root", "human"))
            with TestClient(create_api(app)) as client:
                shown = client.get(
                    f"/api/runs/{run_id}", headers={"Authorization": f"Bearer {issued.token}"}
                )
            assert shown.status_code == 200, shown.text
            (step,) = [s for s in app.store.steps(run_id) if s.key == "model#1"]
            yield Ran(shown.json(), step, list(srv.requests))
        finally:
            app.close()


def test_the_trace_shows_the_thinking_with_secrets_redacted(ran: Ran) -> None:
    assert ran.detail["state"] == "SUCCEEDED", ran.detail
    first, second = ran.detail["trace"][0]["model_calls"]
    assert first["thinking"] == [
        THOUGHT,
        "The key [redacted:crm_key] is not needed.",
        "[redacted]",
    ]
    assert first["tool_calls"][0]["result"] == "plan of acme: gold"
    assert second["thinking"] == []
    assert second["text"] == "acme is on gold"


def test_the_model_step_stores_the_blocks(ran: Ran) -> None:
    stored = ran.step.result["thinking"]
    assert stored[0] == {"text": THOUGHT, "signature": SIGNATURE, "data": ""}
    assert SECRET not in str(ran.step.result)
    assert stored[2] == {"text": "", "signature": "", "data": "opaque-encrypted-reasoning"}


def test_the_next_request_carries_the_thinking_back_first(ran: Ran) -> None:
    assert len(ran.requests) == 2
    assistant = ran.requests[1]["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][:3] == [
        {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
        # The loop continues from the stored (redacted) step, so a secret value never goes
        # to the model, even one it wrote itself; the API would refuse the altered block.
        {
            "type": "thinking",
            "thinking": "The key [redacted:crm_key] is not needed.",
            "signature": "sig-2",
        },
        {"type": "redacted_thinking", "data": "opaque-encrypted-reasoning"},
    ]
    assert assistant["content"][3]["type"] == "tool_use"


def test_openai_responses_keeps_reasoning_summaries() -> None:
    with FakeOpenAIServer() as srv:
        srv.push(FakeReply(text="gold", thinking=(FakeThinking("Check the plan."),)))
        model = OpenAIResponsesModel("gpt-test", api_key="k", base_url=srv.base_url)
        request = ModelRequest("gpt-test", "Review.", (Message("user", "acme?"),))
        response = asyncio.run(model.complete(request))
    assert response.text == "gold"
    assert response.thinking == (Thinking("Check the plan."),)
    assert response_from_json(to_json(response)) == response
