"""What every tool's version of the benchmark agent shares: the task, the tool, the script
the fake provider follows, and how each case process measures itself."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import sys
from typing import Any

MODEL_NAME = "claude-bench"
INSTRUCTIONS = (
    "You process orders. Look the order up with the lookup tool twice (step 1, then step 2), "
    "then say that the order is done."
)
TURNS = 3  # model calls per run: tool call, tool call, final answer
_TASK = re.compile(r"Process order (\d+)\.")


def task(i: int) -> str:
    return f"Process order {i}."


def run_index(body: dict[str, Any]) -> int | None:
    """Which run a Messages API request belongs to: its first user message names the order
    (a string for some clients, a list of text blocks for others)."""
    messages = body.get("messages") or []
    if not messages:
        return None
    content = messages[0].get("content")
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    found = _TASK.search(content or "")
    return int(found.group(1)) if found else None


def turn_of(body: dict[str, Any]) -> int:
    """The conversation turn: assistant messages already in the request, plus one."""
    return 1 + sum(1 for m in body.get("messages") or () if m.get("role") == "assistant")


def latency(seed: int, run: int, turn: int, low: float, high: float) -> float:
    """Each (run, turn) gets the same latency whichever tool asks, so tools are compared on
    identical work and the latency part of the bound is known in advance."""
    return random.Random(f"{seed}:{run}:{turn}").uniform(low, high)


def lookup_text(order: int, step: int) -> str:
    """The tool's work, the same for every tool: a string the model reads."""
    return f"order {order}, step {step}: in stock, ships tomorrow"


def rss_kib() -> int:
    """The current resident set size (ru_maxrss is the peak; this is now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(result: dict[str, Any]) -> None:
    """The case's one JSON line on stdout, then exit without waiting for stray threads."""
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
