"""rota's Prometheus metrics, defined once, in `prometheus_client`'s default registry.

Counters and histograms count what this process did: a worker counts the runs it finished,
a scheduler the ticks it decided, the API the webhook deliveries it refused. Scrape every
rota process (`/metrics` of `rota serve`/`rota dev`, `rota worker --metrics-port`,
`rota scheduler --metrics-port`) and sum them. What is true of the whole system at one
moment (queue depth, approvals waiting, budgets) is read from the store when scraped
(rota.observability.collectors), so every process reports the same figures.

Two older counters live where they are counted, in lower layers, and are served the same way:
`rota_model_tokens_total`/`rota_model_cost_usd_total` (rota.cost.metrics) and
`rota_tool_calls_denied_total` (rota.agents.permissions). See docs/observability.md.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter, Histogram

from ..cost.metrics import count_usage
from ..model import TokenCounts

# Seconds; runs and steps range from milliseconds (a job) to minutes (an agent).
_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_LATENESS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

RUNS_FINISHED = Counter(
    "rota_runs_finished",  # exposed as rota_runs_finished_total
    "Runs this process finished, by job, kind (job, workflow, agent) and final state "
    "(SUCCEEDED, or FAILED after its last attempt).",
    ["job", "kind", "state"],
)
RUN_RETRIES = Counter(
    "rota_run_retries",
    "Failed attempts this process handed back to the queue to be retried.",
    ["job", "kind"],
)
RUN_DURATION = Histogram(
    "rota_run_duration_seconds",
    "Wall time of each execution of a run, by how it ended (succeeded, failed, retried, "
    "parked on a durable wait, interrupted).",
    ["job", "kind", "outcome"],
    buckets=_DURATIONS,
)
STEP_DURATION = Histogram(
    "rota_step_duration_seconds",
    "Wall time of each durable step executed (replayed checkpoints are not counted), "
    "by job, step name and state.",
    ["job", "step", "state"],
    buckets=_DURATIONS,
)
SCHEDULE_LATENESS = Histogram(
    "rota_schedule_lateness_seconds",
    "How late the scheduler enqueued a tick: when it decided it minus its fire time "
    "(0 when decided ahead of time).",
    ["schedule"],
    buckets=_LATENESS,
)
TICKS_SKIPPED = Counter(
    "rota_schedule_ticks_skipped",
    "Ticks the scheduler decided not to run, by schedule and reason (misfire, overlap, "
    "paused, ...).",
    ["schedule", "reason"],
)
WEBHOOK_REJECTIONS = Counter(
    "rota_webhook_rejections",
    "Webhook deliveries refused, by hook (unknown names count as _unknown), HTTP status "
    "and reason.",
    ["hook", "status", "reason"],
)
AGENT_TOKENS = Counter(
    "rota_agent_tokens",
    "Tokens used by each agent's model calls, by kind (input, output, cache_write, "
    "cache_read, reasoning); model is the full provider:model string.",
    ["agent", "model", "type"],
)
AGENT_COST = Counter(
    "rota_agent_cost_usd",
    "USD spent by each agent's model calls at the price in force (simulated models count 0).",
    ["agent", "model"],
)

UNKNOWN_HOOK = "_unknown"  # a name from the URL that no hook has: not a label value of its own


def observe_agent_usage(agent: str, model: str, usage: TokenCounts, cost: Decimal) -> None:
    count_usage(AGENT_TOKENS, AGENT_COST, (agent, model), usage, cost)


def observe_tick(schedule: str, lateness_s: float) -> None:
    SCHEDULE_LATENESS.labels(schedule).observe(max(0.0, lateness_s))


def observe_skipped(schedule: str, reason: str, ticks: int) -> None:
    TICKS_SKIPPED.labels(schedule, reason).inc(ticks)


def observe_rejection(hook: str | None, status: int, reason: str) -> None:
    WEBHOOK_REJECTIONS.labels(hook or UNKNOWN_HOOK, str(status), reason).inc()
