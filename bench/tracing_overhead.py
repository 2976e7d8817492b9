"""Tracing overhead: CPU per model call of durable agent runs with tracing off, on to an
in-memory exporter, and on to an OTLP/HTTP receiver on loopback, side by side.

    .venv/bin/python -m bench.tracing_overhead --runs 300 --repeat 3   # about 3 minutes

Each run is the agent of bench/agent_fanout.py: the `lookup` tool called twice, then a final
answer (3 model calls, 2 tool calls, 5 durable steps), with two providers:

- anthropic: the fake Anthropic Messages API (bench/agents/fake_server.py) in a process of
  its own, with no latency and no rate limit, through the real SDK, as in the fan-out.
- scripted: rota's offline scripted model (no HTTP at all), so that rota's own work is
  nearly all there is to measure: the harshest ratio.

Each case is a fresh process and a fresh PostgreSQL database: the runs are enqueued, then
ONE worker (16 slots) drains them; the CPU time of that process (every thread: the span
processor's exporting thread included) over the drain, plus the final flush of what the
exporter still buffers, is divided by the model calls answered.

- off: no OTEL_* variable and no provider, the default (rota's wrappers are left out).
- memory: rota.observability.configure() with an SDK TracerProvider whose
  BatchSpanProcessor exports to an InMemorySpanExporter, and a MeterProvider.
- otlp: OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver on 127.0.0.1 in another process
  (it answers 200 to every POST): the real OTLP/HTTP exporter, spans and metrics.

Rounds are interleaved (off, memory, otlp, off, ...) so machine noise hits every case alike;
medians are reported. Goal: tracing on within 10% of off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.agents.common import INSTRUCTIONS, MODEL_NAME, lookup_text, task

from rota import Agent, App, ToolContext, observability, tool
from rota.agents.types import ModelRequest
from rota.cost import Price
from rota.testing import ScriptedModel, answer, call

CASES = ("off", "memory", "otlp")
MODELS = ("anthropic", "scripted")
PG = os.environ.get("ROTA_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
GOAL = 1.10

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


@tool
def lookup(ctx: ToolContext, order: int, step: int) -> str:
    """Look an order up.

    Args:
        order: The order number.
        step: Which lookup this is (1 or 2).
    """
    return lookup_text(order, step)


def decide(request: ModelRequest, turn: int) -> Any:
    """The scripted model's side of the fan-out script: two lookups, then the answer."""
    if turn < 3:
        return call(lookup, order=0, step=turn)
    return answer("done")


def bench_agent(model: str, base_url: str | None) -> Agent:
    if model == "scripted":
        return Agent("bench-agent", ScriptedModel("bench", fn=decide), INSTRUCTIONS, tools=[lookup])
    return Agent(
        name="bench-agent",
        model=f"anthropic:{MODEL_NAME}",
        base_url=base_url,
        instructions=INSTRUCTIONS,
        tools=[lookup],
        max_steps=5,
        price=Price(input=3, output=15),  # a fake server's model has no list price
    )


def fresh_database(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{PG}/{name}"


def one_case(case: str, model: str, runs: int, dsn: str, base_url: str | None) -> dict[str, Any]:
    """In a fresh process: enqueue `runs` agent runs, drain them with one worker."""
    exported: Any = None
    if case == "memory":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exported = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(exported))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        observability.configure(tracer_provider, meter_provider)
    telemetry = observability.active()  # decided (and the SDK imported) before measuring
    assert (telemetry is None) == (case == "off"), case

    app = App(dsn)
    app.agent(bench_agent(model, base_url))
    app.run_many("bench-agent", [task(i) for i in range(runs)])
    cpu, wall = time.process_time(), time.perf_counter()
    stats = app.drain(concurrency=16)
    if telemetry is not None:
        telemetry.flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    calls = runs * 3
    succeeded = app.store.count_states(["bench-agent"]).get("SUCCEEDED", 0)
    app.close()
    return {
        "case": case,
        "model": model,
        "runs": runs,
        "succeeded": succeeded,
        "model_calls": calls,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_ms_per_call": round(1000 * cpu / calls, 4),
        "spans": None if exported is None else len(exported.get_finished_spans()),
        "stats": str(stats),
    }


def run_round(case: str, model: str, runs: int, port: int, base_url: str) -> dict[str, Any]:
    dsn = fresh_database(f"rota_bench_tracing_{case}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["ANTHROPIC_API_KEY"] = "test"
    if case == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    argv = ["--case", case, "--model", model, "--runs", str(runs), "--dsn", dsn]
    out = subprocess.run(
        [sys.executable, "-m", "bench.tracing_overhead", *argv, "--base-url", base_url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = one_case(args.case, args.model, args.runs, args.dsn, args.base_url)
        print(json.dumps(result))
        return

    models = args.models.split(",")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    provider = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.agents.fake_server",
            "--rpm",
            "100000000",
            "--latency",
            "0,0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and provider.stdout is not None
        port = int(receiver.stdout.readline())
        base_url = json.loads(provider.stdout.readline())["base_url"]
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_no in range(1, args.repeat + 1):
            for model in models:
                for case in CASES:
                    result = run_round(case, model, args.runs, port, base_url)
                    print(f"round {round_no} {json.dumps(result)}", file=sys.stderr)
                    assert result["succeeded"] == args.runs, result
                    results.setdefault((model, case), []).append(result)
    finally:
        receiver.terminate()
        provider.terminate()
        receiver.wait(timeout=10)
        provider.wait(timeout=10)

    print(f"{args.runs} agent runs x 3 model calls per case, {args.repeat} rounds, medians\n")
    print("| provider | tracing | CPU ms per model call | vs off | wall s |")
    print("|---|---|---|---|---|")
    met = True
    for model in models:
        off = statistics.median(r["cpu_ms_per_call"] for r in results[(model, "off")])
        for case in CASES:
            runs = results[(model, case)]
            cpu = statistics.median(r["cpu_ms_per_call"] for r in runs)
            wall = statistics.median(r["wall_s"] for r in runs)
            met = met and cpu <= off * GOAL
            print(f"| {model} | {case} | {cpu:.3f} | {cpu / off:.2f}x | {wall:.2f} |")
    print(f"\ngoal: tracing on within {GOAL - 1:.0%} of off: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
