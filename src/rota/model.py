"""Frozen records of what the store holds. Times are epoch seconds (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    """Where a run is in its life. Stored as these strings, so SQL filters and the CLI use them."""

    ENQUEUED = "ENQUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


FINISHED_STATES = tuple(s.value for s in RunState if s.finished)

# The model providers rota speaks (`provider:model`).
PROVIDERS = ("anthropic", "openai", "openai-responses", "openai-compatible", "scripted")


@dataclass(frozen=True)
class TokenCounts:
    """The one record of model usage: the tokens of one call or a sum of calls, by kind,
    and the requests made. Read from each response's own usage fields; never estimated for
    real providers. (`rota.agents.types.Usage` is this type.)"""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens, not added again
    requests: int = 1

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    @property
    def total(self) -> int:
        """The tokens billed: input, output, cache writes and cache reads."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_write_tokens
            + self.cache_read_tokens
        )

    def counts(self) -> tuple[int, ...]:
        """The counts in field order (a record with the same fields is built from them)."""
        return (
            self.input_tokens,
            self.output_tokens,
            self.cache_write_tokens,
            self.cache_read_tokens,
            self.reasoning_tokens,
            self.requests,
        )

    @classmethod
    def of(cls, record: Any) -> TokenCounts:
        """The counts of a record that carries the same six fields (a stored usage row)."""
        return cls(
            record.input_tokens,
            record.output_tokens,
            record.cache_write_tokens,
            record.cache_read_tokens,
            record.reasoning_tokens,
            record.requests,
        )


@dataclass(frozen=True)
class ModelCall:
    """The metering of one model call. `cost_pusd` is its cost in picodollars (USD x 1e12)
    at `price` (the Price as JSON text, with its source) in force when the run started.
    The token fields are stored flat (one column each); `usage` is them as TokenCounts."""

    run_id: str
    step_key: str
    at: float  # when the call started (a budget period is chosen by it)
    name: str  # the run's job, workflow or agent
    agent: str
    principal: str | None
    trigger: str | None
    provider: str
    model: str  # provider:model, as the agent names it
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    requests: int
    cost_pusd: int
    price: str
    simulated: bool = False

    @property
    def usage(self) -> TokenCounts:
        return TokenCounts.of(self)


@dataclass(frozen=True, slots=True)
class NewRun:
    """What it takes to enqueue a run; the store assigns nothing but what it must."""

    id: str
    name: str
    kind: str
    payload: str | None  # JSON text
    trigger: str
    created_at: float
    run_after: float
    priority: int = 0
    max_attempts: int = 1
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    principal: str | None = None
    trigger_ref: str | None = None
    parent_id: str | None = None
    timeout_s: float | None = None
    trace_context: str | None = None  # W3C traceparent the run continues (rota.observability)


@dataclass(frozen=True, slots=True)
class Debounced:
    """An event-run that waits for quiet: later events of a burst move it back, up to
    `max_wait_s` after the first, instead of enqueueing runs of their own."""

    run: NewRun
    quiet_s: float
    max_wait_s: float | None


@dataclass(frozen=True, slots=True)
class Run:
    """A run as stored: one execution request of a job, workflow or agent, with its state,
    payload, result or error and attempts. A snapshot: read it again for its state now."""

    id: str
    name: str
    kind: str
    state: RunState
    payload: Any
    result: Any
    error: dict[str, Any] | None
    priority: int
    attempt: int
    failures: int
    max_attempts: int
    reclaims: int
    idempotency_key: str | None
    concurrency_key: str | None
    concurrency_limit: int | None
    principal: str | None
    trigger: str
    trigger_ref: str | None
    parent_id: str | None
    run_after: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    lease_owner: str | None
    lease_token: int
    lease_expires_at: float | None
    cancel_requested: bool
    timeout_s: float | None
    trace_context: str | None = None  # W3C traceparent the run continues (rota.observability)


@dataclass(frozen=True, slots=True)
class Step:
    """A checkpointed step of a run (`ctx.step`, an agent's model call or tool call):
    its result is what a resumed run gets back instead of executing the step again."""

    run_id: str
    key: str
    seq: int
    name: str
    state: str  # SUCCEEDED | FAILED
    attempts: int
    input_hash: str | None
    result: Any
    error: dict[str, Any] | None
    started_at: float
    finished_at: float


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step outcome to checkpoint, fenced by the lease token of the writer."""

    run_id: str
    lease_token: int
    key: str
    seq: int
    name: str
    state: str
    attempts: int
    input_hash: str | None
    result: str | None  # JSON text
    error: str | None  # JSON text
    started_at: float
    finished_at: float


@dataclass(frozen=True, slots=True)
class Completion:
    """The outcome of one run attempt, written in batches by the worker."""

    run_id: str
    lease_token: int
    state: RunState
    finished_at: float | None
    result: str | None = None
    error: str | None = None
    failures: int = 0
    run_after: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event (`app.emit`, a webhook delivery, a PostgreSQL NOTIFY): kept so that
    `on_event` triggers and `ctx.wait_for_event` see it, and `rota events replay` can rerun it."""

    id: str
    name: str
    payload: Any
    idempotency_key: str | None
    source: str
    created_at: float


@dataclass(frozen=True, slots=True)
class NewWait:
    """A durable wait to register for a step of a run that the writer holds the lease of.

    `kind` is "sleep" (time only) or "event" (any of `topics`, i.e. "event:NAME", whose
    payload fits detail["match"], stored since `since`); an approval is meant to be another
    kind, resolved by a decision. `deadline` (None: none) times it out."""

    run_id: str
    lease_token: int
    step_key: str
    step_name: str
    seq: int
    kind: str
    topics: tuple[str, ...]
    detail: dict[str, Any]
    since: float | None
    deadline: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Wait:
    """A registered wait as stored: `status` is waiting, resolved, timed_out or cancelled;
    `event_id` is the event that resolved it."""

    run_id: str
    step_key: str
    kind: str
    topics: tuple[str, ...]
    detail: dict[str, Any]
    since: float | None
    deadline: float | None
    status: str
    event_id: str | None
    created_at: float
    resolved_at: float | None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list, newest first (by id: ids are time-ordered). `before_id` is the
    keyset cursor: runs older than that one. `since`/`until` bound `created_at` (start
    inclusive, end exclusive); `error_text` matches inside the error, case-insensitively."""

    states: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    limit: int = 50
    before_id: str | None = None
    kinds: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    error_text: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A webhook delivery that was refused, kept so that operators can see who knocked."""

    id: str
    hook: str
    status: int
    reason: str
    message: str
    delivery_id: str | None
    body_bytes: int
    received_at: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """A time trigger of a job as the scheduler tracks it: fire times before `cursor_at` are
    decided (a run, or a recorded skip); `next_fire_at` is when it is next due."""

    name: str
    job: str
    definition: str
    description: str
    paused: bool
    cursor_at: float
    next_fire_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Tick:
    """One decision about a schedule's fire time(s): a run enqueued, or ticks skipped with
    their reason (misfire, overlap, paused, suppressed). A skip may cover a range of ticks."""

    id: str
    schedule: str
    fire_at: float
    last_fire_at: float
    ticks: int
    outcome: str  # "enqueued" | "skipped"
    reason: str | None
    run_id: str | None
    decided_at: float
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What the scheduler decided for one due schedule, written in one transaction."""

    schedule: str
    cursor_at: float
    next_fire_at: float | None
    runs: tuple[NewRun, ...]
    ticks: tuple[Tick, ...]
    cancel_run_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Execution:
    """How long one execution of a run's body took (the lease it ran under names it), as
    the worker measured it: from the body's start to its end, whatever ended it (a result,
    an error, a durable wait, an interruption). Not the time the run waited to start."""

    run_id: str
    lease_token: int
    seconds: float
