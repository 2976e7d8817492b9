"""Where the worker's CPU goes per model call, from a py-spy raw profile of the fan-out case.

    .venv-bench/bin/python -m bench.agent_fanout --tools rota --runs 300 --profile /tmp/prof
    .venv-bench/bin/python -m bench.agents.profile_summary /tmp/prof/rota-worker.txt \
        --cpu-ms-per-call 6.8

py-spy samples (`--gil`: only the thread holding the GIL, i.e. Python work) are kept from the
drain only (the worker's `asyncio.run` and the database threads; start-up, imports and the
untimed enqueue are dropped). Each sample goes to one component: walking its stack from the
innermost frame outwards, the first frame that names a component decides (so JSON encoding
inside the SDK is the SDK's, and a store call is whatever asked for it). The hand-off's own
frames (the executor, its queue and locks) count as the hand-off only when the sample is in
them, not when a store call runs under them. A component's share of the samples times the
measured CPU per model call gives its milliseconds per call.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

from bench.harness import table

# (component, substrings of a frame "function (file:line)"), most specific first per frame.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("rate limiter", ("ratelimited.py", "storage/limits.py", "counted_take", "LimitQueries")),
    ("audit", ("audit", "Audit")),
    (
        "metering / budget",
        ("metering.py", "rota/cost/", "storage/usage.py", "UsageQueries", "observe_agent_usage"),
    ),
    ("tracing", ("rota/observability/", "opentelemetry")),
    (
        "serialisation",
        ("rota/serialization.py", "to_json", "response_from_json", "request_record"),
    ),
    ("durable checkpoints", ("save_step", "rota/durable.py", "agentloop/steps.py")),
    (
        "provider SDK (anthropic, httpx)",
        ("anthropic/", "httpx", "httpcore", "h11/", "anyio/", "ssl.py", "models/anthropic.py"),
    ),
    ("retrying", ("models/retrying.py",)),
    (
        "agent loop and chain",
        ("agentloop/", "rota/agents/", "rota/approvals/", "rota/identity/", "rota/shadow.py"),
    ),
    ("hand-off to the database threads", ("Worker.db", "run_in_executor", "DatabaseThreads.call")),
]
# The executor's own frames: a hand-off when the sample is in them, but a database thread's
# store call runs under them too, so they count only until a store or driver frame is seen.
HAND_OFF = "hand-off to the database threads"
HAND_OFF_MACHINERY = (
    "concurrent/futures/",
    "threading.py",
    "call_soon_threadsafe",
    "queue.py",
    "rota/batches.py",
)
# Second pass, when no frame names one of the above: who made the query is unknown.
FALLBACK: list[tuple[str, tuple[str, ...]]] = [
    ("worker (claim, complete, slots)", ("rota/worker/", "rota/storage/")),
    ("database driver, unattributed", ("psycopg", "sqlite3")),
]
OTHER = "event loop, threads and other"


def component(frames: list[str]) -> str:
    """The innermost frame naming a component decides; the store's and driver's own frames
    count only when nothing above them names who made the query."""
    for frame in reversed(frames):
        for name, needles in RULES:
            if any(n in frame for n in needles):
                return name
    for frame in reversed(frames):
        if any(n in frame for _, needles in FALLBACK for n in needles):
            break  # a store call: whoever made it decides, not the executor running it
        if any(n in frame for n in HAND_OFF_MACHINERY):
            return HAND_OFF
    for frame in reversed(frames):
        for name, needles in FALLBACK:
            if any(n in frame for n in needles):
                return name
    return OTHER


def in_drain(frames: list[str]) -> bool:
    """A sample of the drain: under the worker's asyncio.run, on a database thread, or a
    stack py-spy could not follow to its root (a task's)."""
    if "_run_module_as_main" not in frames[0]:
        return True
    return any(
        outer.startswith("main (") and "rota_case.py" in outer and inner.startswith("run (")
        for outer, inner in itertools.pairwise(frames)
    )  # the worker's asyncio.run(drain(...)) in bench/agents/rota_case.py


def summarise(path: str) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            if not in_drain(frames):
                continue
            counts[component(frames)] += int(n)
            total += int(n)
    return counts, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", help="py-spy --format raw output")
    p.add_argument("--cpu-ms-per-call", type=float, required=True, help="as the bench measured")
    args = p.parse_args()
    counts, total = summarise(args.profile)
    rows = [
        [name, f"{n / total:.0%}", f"{n / total * args.cpu_ms_per_call:.2f}"]
        for name, n in counts.most_common()
    ]
    rows.append(["total", f"{total} samples", f"{args.cpu_ms_per_call:.2f}"])
    print(table(["component", "share of samples", "CPU ms per model call"], rows))


if __name__ == "__main__":
    main()
