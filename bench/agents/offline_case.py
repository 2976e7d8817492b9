"""rota's own CPU per model call, with no SDK and no HTTP: the fan-out's agent (bench/agents/
rota_case.py) over an offline provider that answers from memory after a sleep.

    .venv/bin/python -m bench.agents.offline_case --runs 300
    .venv/bin/python -m bench.agents.offline_case --runs 300 --profile /tmp/offline.prof

The provider stands in for the SDK at no cost of its own: it reads the turn from the request,
sleeps the turn's latency (the fan-out's seeded 1-3 s by default, so that calls, checkpoints
and rate-limit turns arrive spread out as they do there) and returns a prebuilt response:
the `lookup` tool twice, then the final answer. Everything around it is the fan-out's agent:
`RetryingModel(RateLimitedModel(provider))` with the fan-out's rate limit, an explicit price,
the same tool, one worker with 1,000 slots on PostgreSQL. So the process's CPU over the drain
(getrusage, every thread, the database threads included) divided by the model calls is
rota's own work per call, nearly all of it.

`--profile PATH` runs the drain under cProfile and writes its stats to PATH (cProfile slows
Python a lot, so the CPU figure of a profiled run is not comparable). Works with any build on
PYTHONPATH (bench/ab.py runs it for the old and the new one). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import faulthandler
import logging
import sys
import time
from typing import Any

from bench.peers.common import analyze, reset_database

from rota import Agent, App, tool
from rota.agents.models.ratelimited import RateLimit, RateLimitedModel
from rota.agents.models.retrying import RetryingModel
from rota.agents.types import ModelRequest, ModelResponse, ToolCall, Usage
from rota.cost import Price

from .common import INSTRUCTIONS, MODEL_NAME, TURNS, cpu_s, emit, latency, lookup_text, task

AGENT = "order-agent"
DSN = "postgresql://postgres@127.0.0.1:5432/rota_bench_offline"
USAGE = Usage(input_tokens=420, output_tokens=40)


class OfflineProvider:
    """A provider that costs next to nothing: each turn's response is built once."""

    provider = "bench"
    name = MODEL_NAME

    def __init__(self, seed: int, low: float, high: float) -> None:
        self.seed, self.low, self.high = seed, low, high
        self.calls = 0
        self.replies = [self._reply(turn) for turn in range(1, TURNS + 1)]

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        turn = 1 + sum(1 for m in request.messages if m.role == "assistant")
        if self.high > 0:
            order = int(request.messages[0].text.split()[-1].rstrip("."))
            await asyncio.sleep(latency(self.seed, order, turn, self.low, self.high))
        return self.replies[min(turn, TURNS) - 1]

    def _reply(self, turn: int) -> ModelResponse:
        calls = (
            ()
            if turn == TURNS
            else (ToolCall(f"toolu_{turn}", "lookup", {"order": 0, "step": turn}),)
        )
        return ModelResponse(
            text="The order is done." if turn == TURNS else "",
            tool_calls=calls,
            stop_reason="tool_use" if calls else "end_turn",
            usage=USAGE,
            model=MODEL_NAME,
            provider=self.provider,
            request_id=f"req_{turn}",
        )


def build(dsn: str, provider: OfflineProvider, rpm: float) -> App:
    app = App(dsn)

    @tool
    async def lookup(order: int, step: int) -> str:
        """Look an order up.

        Args:
            order: The order number.
            step: Which lookup this is (1 or 2).
        """
        return lookup_text(order, step)

    model = RetryingModel(RateLimitedModel(provider, RateLimit(requests_per_minute=rpm)))
    agent = Agent(
        name=AGENT,
        model=model,
        instructions=INSTRUCTIONS,
        tools=[lookup],
        max_steps=5,
        price=Price(input=3, output=15),
    )
    app.agent(agent)
    return app


async def drain(app: App, concurrency: int, timeout: float) -> dict[str, Any]:
    worker = app.worker(concurrency=concurrency)
    cpu0, loop0, t0 = cpu_s(), time.thread_time(), time.perf_counter()
    stats = await asyncio.wait_for(worker.run(until_idle=True), timeout)
    return {
        "cpu_s": cpu_s() - cpu0,  # every thread
        "loop_cpu_s": time.thread_time() - loop0,  # the event loop's thread alone
        "wall_s": time.perf_counter() - t0,
        "stats": str(stats),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", default=DSN)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--rpm", type=float, default=3000)
    p.add_argument("--latency", default="1,3", help="seconds, low,high; 0,0: none")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--profile", help="write cProfile stats of the drain here")
    args = p.parse_args()
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    low, high = (float(x) for x in args.latency.split(","))

    reset_database(args.dsn)
    provider = OfflineProvider(args.seed, low, high)
    app = build(args.dsn, provider, args.rpm)
    app.store.migrate()
    app.run_many(AGENT, [task(i) for i in range(args.runs)])
    analyze(args.dsn)

    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    got = asyncio.run(drain(app, args.concurrency, args.timeout))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    states = app.store.count_states([AGENT])
    app.close()
    emit(
        {
            "tool": "rota-offline",
            "runs": args.runs,
            "succeeded": states.get("SUCCEEDED", 0),
            "model_calls": provider.calls,
            "cpu_s": round(got["cpu_s"], 3),
            "loop_cpu_s": round(got["loop_cpu_s"], 3),
            "wall_s": round(got["wall_s"], 3),
            "cpu_ms_per_call": round(1000 * got["cpu_s"] / max(provider.calls, 1), 4),
            "loop_cpu_ms_per_call": round(1000 * got["loop_cpu_s"] / max(provider.calls, 1), 4),
            "stats": got["stats"],
        }
    )


if __name__ == "__main__":
    main()
