"""`chat {model}` spans and the GenAI client metrics: a Model wrapper at the bottom of the
chain (rota.agentloop.chain), so only calls that reach the provider are traced; a model
step answered from its checkpoint is not a call."""

from __future__ import annotations

import time
from typing import Any

from ..agents.types import Model, ModelRequest, ModelResponse
from . import content
from .telemetry import Telemetry

# rota's provider names as the conventions spell them (gen_ai.provider.name).
_PROVIDERS = {"openai-responses": "openai", "openai-compatible": "openai"}


def provider_name(provider: str) -> str:
    return _PROVIDERS.get(provider, provider)


class TracedModel:
    """Each call is a `chat {model}` span with the request, response and usage attributes
    of the GenAI conventions, and feeds gen_ai.client.operation.duration and
    gen_ai.client.token.usage. Content only with `capture` (redacted)."""

    def __init__(self, inner: Model, telemetry: Telemetry, agent: str, capture: bool) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.telemetry = telemetry
        self.capture = capture
        self._base = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_name(inner.provider),
            "gen_ai.request.model": inner.name,
        }
        self._attributes: dict[str, Any] = {**self._base, "gen_ai.agent.name": agent}
        self._metric_attributes: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {}

    async def complete(self, request: ModelRequest) -> ModelResponse:
        telemetry = self.telemetry
        attributes = self._attributes
        if request.model != self.name or self.capture:
            attributes = {**attributes, "gen_ai.request.model": request.model}
        if self.capture:
            attributes["gen_ai.input.messages"] = content.input_messages(request.messages)
            attributes["gen_ai.system_instructions"] = content.system_instructions(request.system)
        started = time.perf_counter()
        with telemetry.operation(f"chat {request.model}", attributes) as span:
            try:
                response = await self.inner.complete(request)
            except BaseException as exc:
                measured = {**self._base, "gen_ai.request.model": request.model}
                measured["error.type"] = type(exc).__name__
                telemetry.operation_duration.record(time.perf_counter() - started, measured)
                raise
            span.set_attributes(self._response(response))
        by_type = self._measured(request.model, response.model)
        telemetry.operation_duration.record(time.perf_counter() - started, by_type[0])
        telemetry.token_usage.record(_input_tokens(response), by_type[1])
        telemetry.token_usage.record(response.usage.output_tokens, by_type[2])
        return response

    def _measured(self, requested: str, answered: str) -> tuple[dict[str, Any], ...]:
        """The metrics' attributes (duration, input tokens, output tokens) for this pair of
        models, made once: a model call records three measurements."""
        key = (requested, answered)
        found = self._metric_attributes.get(key)
        if found is None:
            base = {
                **self._base,
                "gen_ai.request.model": requested,
                "gen_ai.response.model": answered,
            }
            found = (
                base,
                {**base, "gen_ai.token.type": "input"},
                {**base, "gen_ai.token.type": "output"},
            )
            self._metric_attributes[key] = found
        return found

    def _response(self, response: ModelResponse) -> dict[str, Any]:
        usage = response.usage
        attributes: dict[str, Any] = {
            "gen_ai.response.model": response.model,
            "gen_ai.response.finish_reasons": (response.stop_reason,),
            "gen_ai.usage.input_tokens": _input_tokens(response),
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        }
        if response.request_id:
            attributes["gen_ai.response.id"] = response.request_id
        if self.capture:
            attributes["gen_ai.output.messages"] = content.output_messages(response)
        return attributes


def _input_tokens(response: ModelResponse) -> int:
    """Input tokens as the conventions count them: cache reads and writes included."""
    usage = response.usage
    return usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
