"""pydantic-ai's half of bench/agent_fanout.py: the same agent, all runs at once with asyncio.

    python -m bench.agents.pydantic_ai_case --base-url http://127.0.0.1:PORT --runs 1000

pydantic-ai has no limiter shared between runs (its `max_concurrency` caps requests in
flight, not requests per minute), so it is set up as its documentation suggests for rate
limits ("HTTP Request Retries"): the provider's HTTP client gets an
`AsyncHTTPX2TenacityTransport` that retries 429/5xx responses, waiting as long as the
`retry-after` header says (`wait_retry_after`), for at most 5 attempts. The Anthropic SDK
underneath keeps its own default (2 retries) for what still fails. One process runs every
`agent.run()` concurrently with `asyncio.gather`; it measures wall time, its CPU, its peak RSS
over the resident size before the runs, and how many runs were in progress at once.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import time
from collections import Counter
from typing import Any

import httpx2
from pydantic_ai import Agent
from pydantic_ai.models import create_async_httpx2_client
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.retries import AsyncHTTPX2TenacityTransport, RetryConfig, wait_retry_after
from tenacity import retry_if_exception_type, stop_after_attempt

from .common import INSTRUCTIONS, MODEL_NAME, cpu_s, emit, lookup_text, peak_rss_kib, rss_kib, task

RETRY_STATUSES = (429, 500, 502, 503, 504, 529)
ATTEMPTS = 5


def build(base_url: str) -> Agent[None, str]:
    def raise_for_retryable(response: httpx2.Response) -> None:
        if response.status_code in RETRY_STATUSES:
            response.raise_for_status()

    transport = AsyncHTTPX2TenacityTransport(
        config=RetryConfig(
            retry=retry_if_exception_type(httpx2.HTTPStatusError),
            wait=wait_retry_after(max_wait=300),
            stop=stop_after_attempt(ATTEMPTS),
            reraise=True,
        ),
        validate_response=raise_for_retryable,
    )
    provider = AnthropicProvider(
        api_key="test",
        base_url=base_url,
        http_client=create_async_httpx2_client(transport=transport),
    )
    agent: Agent[None, str] = Agent(
        AnthropicModel(MODEL_NAME, provider=provider), instructions=INSTRUCTIONS
    )

    @agent.tool_plain
    async def lookup(order: int, step: int) -> str:
        """Look an order up.

        Args:
            order: The order number.
            step: Which lookup this is (1 or 2).
        """
        return lookup_text(order, step)

    return agent


async def fan_out(agent: Agent[None, str], runs: int, timeout: float) -> dict[str, Any]:
    in_progress = peak = 0
    outcomes: Counter[str] = Counter()

    async def one(i: int) -> None:
        nonlocal in_progress, peak
        in_progress += 1
        peak = max(peak, in_progress)
        try:
            result = await agent.run(task(i))
            ok = result.output == f"Order {i} is done."
            outcomes["succeeded" if ok else "wrong answer"] += 1
        except Exception as exc:
            outcomes[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
        finally:
            in_progress -= 1

    baseline, cpu0, t0 = rss_kib(), cpu_s(), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(runs))), timeout)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": cpu_s() - cpu0,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_rss_kib(),
        "peak_concurrent": peak,
        "succeeded": outcomes.pop("succeeded", 0),
        "failed": sum(outcomes.values()),
        "errors": dict(outcomes.most_common(3)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    agent = build(args.base_url)
    result = asyncio.run(fan_out(agent, args.runs, args.timeout))
    emit(
        {
            "tool": "pydantic-ai",
            **result,
            "runs": args.runs,
            "config": f"{args.runs} concurrent agent.run() in one process; "
            f"AsyncHTTPX2TenacityTransport: retry 429/5xx, wait_retry_after, {ATTEMPTS} "
            "attempts; Anthropic SDK default max_retries=2 underneath",
        }
    )


if __name__ == "__main__":
    main()
