"""Prometheus counters for model usage, in the default registry (the dashboard's /metrics
endpoint exposes it). Counted for every call a process makes, including a call repeated
after a crash: Prometheus counts what was done, the store what the run kept."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import Counter

from ..model import TokenCounts

MODEL_TOKENS = Counter(
    "rota_model_tokens",  # exposed as rota_model_tokens_total
    "Tokens used by model calls, by kind (input, output, cache_write, cache_read, reasoning).",
    ["provider", "model", "type"],
)
MODEL_COST = Counter(
    "rota_model_cost_usd",  # exposed as rota_model_cost_usd_total
    "USD spent on model calls at the price in force (simulated models count 0).",
    ["provider", "model"],
)


def observe(provider: str, model: str, usage: TokenCounts, cost: Decimal) -> None:
    count_usage(MODEL_TOKENS, MODEL_COST, (provider, model), usage, cost)


def count_usage(
    tokens: Counter, dollars: Counter, labels: tuple[str, str], usage: TokenCounts, cost: Decimal
) -> None:
    """Add one call's usage to a tokens counter (labels + a kind) and a USD counter (labels);
    shared with rota.observability's per-agent counters."""
    for kind, count in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_write", usage.cache_write_tokens),
        ("cache_read", usage.cache_read_tokens),
        ("reasoning", usage.reasoning_tokens),
    ):
        if count:
            tokens.labels(*labels, kind).inc(count)
    dollars.labels(*labels).inc(float(cost))
