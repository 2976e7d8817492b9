"""The plain sequential loop of bench/agent_fanout.py: what the agent is without a framework.

    python -m bench.agents.plain_case --base-url http://127.0.0.1:PORT --runs 20

A for-loop over the runs, one after another; each run is a loop of `messages.create` calls
with the anthropic SDK (its defaults: 2 retries, honouring `retry-after`) that executes the
tool calls it is asked for, until the model answers. Nothing runs concurrently, so the rate
limit is never reached: its wall time is the sum of the latencies. Only `--runs` runs are
made; the driver extrapolates to the benchmark's run count, and labels it so.
"""

from __future__ import annotations

import argparse
import faulthandler
import time
from typing import Any

import anthropic

from .common import INSTRUCTIONS, MODEL_NAME, cpu_s, emit, lookup_text, task

LOOKUP_TOOL = {
    "name": "lookup",
    "description": "Look an order up.",
    "input_schema": {
        "type": "object",
        "properties": {
            "order": {"type": "integer", "description": "The order number."},
            "step": {"type": "integer", "description": "Which lookup this is (1 or 2)."},
        },
        "required": ["order", "step"],
        "additionalProperties": False,
    },
}
MAX_STEPS = 5


def run_agent(client: anthropic.Anthropic, prompt: str) -> tuple[str, int]:
    """(final text, model calls made)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for step in range(1, MAX_STEPS + 1):
        reply = client.messages.create(
            model=MODEL_NAME,
            max_tokens=1024,
            system=INSTRUCTIONS,
            tools=[LOOKUP_TOOL],  # type: ignore[list-item]
            messages=messages,  # type: ignore[arg-type]
        )
        messages.append({"role": "assistant", "content": reply.content})
        calls = [b for b in reply.content if b.type == "tool_use"]
        if not calls:
            return "".join(b.text for b in reply.content if b.type == "text"), step
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": c.id,
                        "content": lookup_text(**c.input),  # type: ignore[arg-type]
                    }
                    for c in calls
                ],
            }
        )
    raise RuntimeError(f"no answer after {MAX_STEPS} model calls")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    client = anthropic.Anthropic(api_key="test", base_url=args.base_url)
    succeeded = calls = 0
    cpu0, t0 = cpu_s(), time.perf_counter()
    for i in range(args.runs):
        text, made = run_agent(client, task(i))
        calls += made
        succeeded += text == f"Order {i} is done."
    wall = time.perf_counter() - t0
    emit(
        {
            "tool": "plain loop",
            "wall_s": wall,
            "cpu_s": cpu_s() - cpu0,
            "runs": args.runs,
            "succeeded": succeeded,
            "failed": args.runs - succeeded,
            "model_calls": calls,
            "peak_concurrent": 1,
            "config": f"for-loop, one run after another, sync anthropic SDK (defaults); "
            f"{args.runs} runs measured",
        }
    )


if __name__ == "__main__":
    main()
