"""The plain loop of bench/agent_fanout.py, every run at once: the SDK's own cost at rota's
concurrency.

    python -m bench.agents.plain_async_case --base-url http://127.0.0.1:PORT --runs 1000 --rpm 3000

The same loop as plain_case.py over `anthropic.AsyncAnthropic` (one client, its defaults:
2 retries honouring `retry-after`), every run started at once with asyncio. Before each call
it waits its turn on an in-process limiter (the same GCRA as rota's, a 0.5 s burst), so the
provider's limit is met as rota meets it, without a database. Nothing else: no durability,
metering, budgets or audit. Its CPU per model call is the floor of what the SDK costs with
hundreds of calls in flight (its connection pool, one connection per call in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import time
from typing import Any

import anthropic

from .common import INSTRUCTIONS, MODEL_NAME, cpu_s, emit, lookup_text, task
from .plain_case import LOOKUP_TOOL, MAX_STEPS


class Limiter:
    """Requests per minute, spaced evenly, with `burst_s` seconds' worth allowed at once."""

    def __init__(self, rpm: float, burst_s: float = 0.5) -> None:
        self.interval = 60.0 / rpm
        self.burst_s = burst_s
        self.tat = time.monotonic()

    async def turn(self) -> None:
        now = time.monotonic()
        start = max(now, self.tat - self.burst_s)
        self.tat = max(self.tat, start) + self.interval
        if start > now:
            await asyncio.sleep(start - now)


async def run_agent(client: anthropic.AsyncAnthropic, limiter: Limiter, prompt: str) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for _ in range(MAX_STEPS):
        await limiter.turn()
        reply = await client.messages.create(
            model=MODEL_NAME,
            max_tokens=1024,
            system=INSTRUCTIONS,
            tools=[LOOKUP_TOOL],  # type: ignore[list-item]
            messages=messages,  # type: ignore[arg-type]
        )
        messages.append({"role": "assistant", "content": reply.content})
        calls = [b for b in reply.content if b.type == "tool_use"]
        if not calls:
            return "".join(b.text for b in reply.content if b.type == "text")
        results = [
            {
                "type": "tool_result",
                "tool_use_id": c.id,
                "content": lookup_text(**c.input),  # type: ignore[arg-type]
            }
            for c in calls
        ]
        messages.append({"role": "user", "content": results})
    raise RuntimeError(f"no answer after {MAX_STEPS} model calls")


async def run_all(base_url: str, runs: int, rpm: float) -> dict[str, Any]:
    clients = [anthropic.AsyncAnthropic(api_key="test", base_url=base_url) for _ in range(int(__import__("os").environ.get("SHARDS","1")))]
    limiter = Limiter(rpm)
    cpu0, t0 = cpu_s(), time.perf_counter()
    texts = await asyncio.gather(
        *(run_agent(clients[i % len(clients)], limiter, task(i)) for i in range(runs)), return_exceptions=True
    )
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    [await c.close() for c in clients]
    succeeded = sum(text == f"Order {i} is done." for i, text in enumerate(texts))
    return {"wall_s": wall, "cpu_s": cpu, "succeeded": succeeded}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rpm", type=float, default=3000)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    result = asyncio.run(run_all(args.base_url, args.runs, args.rpm))
    emit(
        {
            "tool": "plain async",
            **result,
            "runs": args.runs,
            "failed": args.runs - result["succeeded"],
            "peak_concurrent": args.runs,
            "config": "every run at once, AsyncAnthropic (defaults), an in-process limiter "
            f"of {args.rpm:g} requests/min; no durability, metering or audit",
        }
    )


if __name__ == "__main__":
    main()
