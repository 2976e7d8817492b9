"""The shapes the API answers with, as pydantic models, for `@returns` (api/openapi.py).

Times are ISO 8601 strings in UTC (`rota.clock.iso`), or null. Every model forbids fields it
does not name, so /openapi.json says exactly what an answer holds, and a schema test catches
an endpoint that starts sending a field its model lacks.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from starlette.responses import JSONResponse


class Out(pydantic.BaseModel):
    """The base of every answer model."""

    model_config = pydantic.ConfigDict(extra="forbid")


class Health(Out):
    status: str
    database: str
    schema_version: int
    message: str


class HookAccepted(Out):
    event_id: str
    runs: list[str]
    duplicate: bool
    message: str


class Whoami(Out):
    name: str
    kind: str
    scopes: list[str]
    roles: list[str]


class Approval(Out):
    id: str
    run_id: str
    step: str
    name: str
    principal: str | None
    question: str
    context: Any
    approvers: list[str]
    on_timeout: str
    status: str
    created_at: str | None
    deadline: str | None
    decided_by: str | None
    decided_at: str | None
    comment: str | None


class AuditRecord(Out):
    seq: int
    id: str
    at: str | None
    actor: str
    actor_kind: str
    on_behalf_of: str | None
    action: str
    subject: str | None
    run_id: str | None
    detail: Any
    prev_hash: str
    hash: str


# -- runs -------------------------------------------------------------------------------------


class RunOut(Out):
    id: str
    name: str
    kind: str
    state: str
    attempt: int
    max_attempts: int
    failures: int
    reclaims: int
    trigger: str
    trigger_ref: str | None
    principal: str | None
    priority: int
    idempotency_key: str | None
    concurrency_key: str | None
    parent_id: str | None
    created_at: str | None
    run_after: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    lease_owner: str | None
    lease_expires_at: str | None
    cancel_requested: bool
    payload: Any
    result: Any
    error: dict[str, Any] | None
    url: str = pydantic.Field(description="This run in the API: /api/runs/{id}")


class RunPage(Out):
    """A page of runs, newest first; pass `next_cursor` as `?cursor=` for the next page."""

    items: list[RunOut]
    next_cursor: str | None


class StepOut(Out):
    key: str
    name: str
    seq: int
    state: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    offset_s: float | None
    duration_s: float
    result: Any
    error: dict[str, Any] | None


class WaitOut(Out):
    step: str
    kind: str
    names: list[str]
    match: dict[str, Any]
    status: str
    since: str | None
    deadline: str | None
    event_id: str | None
    registered_at: str | None
    resolved_at: str | None


class ChainLink(Out):
    depth: int
    id: str
    name: str
    kind: str
    trigger: str
    state: str
    waiting_for: str | None


class TokenUsage(Out):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class ToolCallTrace(Out):
    call_id: str | None
    tool: str | None
    arguments: Any
    step: str | None = None
    result: Any = None
    is_error: bool | None = None
    started_at: str | None = None
    duration_s: float | None = None
    denied: bool | None = pydantic.Field(
        None, description="Refused before it ran (a missing scope, a rejected approval)"
    )
    approval: dict[str, Any] | None = None


class ModelCallTrace(Out):
    step: str
    seq: int
    state: str
    started_at: str | None
    duration_s: float
    model: str | None
    provider: str | None
    response_model: str | None
    response_id: str | None
    system: str | None
    messages: list[Any]
    messages_from: int
    text: str | None
    thinking: list[str]
    stop_reason: str | None
    usage: TokenUsage
    cost_usd: float | None
    error: dict[str, Any] | None
    tool_calls: list[ToolCallTrace]


class AgentTrace(Out):
    prefix: str
    model_calls: list[ModelCallTrace]


class RunDetail(RunOut):
    waiting_for: WaitOut | None = None
    chain: list[ChainLink]
    steps: list[StepOut]
    waits: list[WaitOut]
    trace: list[AgentTrace]


class Divergence(Out):
    step: str
    kind: str
    summary: str
    details: list[str]
    recorded: Any
    replayed: Any


class ReplayOut(Out):
    run_id: str
    agent: str
    identical: bool
    steps_compared: int
    recorded_steps: int
    provider_calls: int
    recorded_tools: bool
    first_divergence: Divergence | None
    result: Any
    recorded_result: Any
    error: str | None
    recorded_error: str | None
    notes: list[str]


class Json(JSONResponse):
    """A JSON answer with non-ASCII escaped: stored text may hold a lone surrogate (a webhook
    payload's "\\ud800" is valid JSON), which UTF-8 cannot encode but `\\ud800` can say."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode("ascii")
