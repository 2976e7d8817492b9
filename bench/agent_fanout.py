"""Agent fan-out: 1,000 agent runs of 3 model calls each against a rate-limited fake provider,
rota next to pydantic-ai and a plain sequential loop.

    .venv-bench/bin/python -m bench.agent_fanout          # about 5 minutes

The provider is the fake Anthropic Messages API (bench/agents/fake_server.py) in a process of
its own: 1-3 s latency per call (the same for each run and turn whichever tool calls), and a
limit of 3,000 requests per minute that it enforces itself, answering 429 with `retry-after`
when it is exceeded (a continuously refilled bucket holding 1 s worth of requests). Each run
is the same agent: a `lookup` tool called twice, then a final answer.

- rota: an App on PostgreSQL (fresh database), the agent registered with `app.agent`,
  `Agent(rate_limit=RateLimit(requests_per_minute=3000))`, the runs enqueued with
  `run_many`, ONE worker process with `--concurrency` slots, until drained.
- pydantic-ai: the same agent, every `agent.run()` at once with asyncio, with the retrying
  HTTP transport its documentation suggests for rate limits.
- plain loop: the anthropic SDK in a for-loop, one run after another; `--plain-runs` runs are
  measured and the wall time extrapolated to `--runs` (labelled as such). Its CPU per model
  call is the baseline of rota's goal, measured in the same run.
- plain async: the same loop over the async SDK, every run at once behind an in-process
  limiter (bench/agents/plain_async_case.py): what the SDK itself costs at rota's concurrency.

Reported: wall time against a lower bound (below), CPU of the process running the agents per
model call answered, peak RSS growth per concurrent run, and the 429s
the provider sent. Every case runs in a fresh subprocess of the bench virtualenv, one after
another, each bounded by `--timeout`.

The lower bound on wall time: C = 3 x runs calls must be answered. The provider admits at most
B = 1 + burst x rate of them at once and then `rate` per second, so the last call cannot be
sent before (C - B) / rate and takes at least the smallest latency L_min; and no run can end
before the sum of its own three latencies:
    bound = max((C - B) / rate + L_min,  max over runs of (L1 + L2 + L3)).
Goals for rota (issue 18): wall / bound <= 1.05 with no run failed; CPU per model call at
most the plain loop's + 1 ms, both measured in the same run (printed under the table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.agents.common import TURNS, latency
from bench.harness import PG, fmt, machine, table

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(REPO_ROOT / ".venv-bench" / "bin" / "python")
TOOLS = ("rota", "pydantic-ai", "plain", "plain-async")
# rota: wall / bound, and CPU per model call over the plain SDK loop's in the same run (issue 18).
GOALS = {"wall_over_bound": 1.05, "cpu_ms_over_plain": 1.0}


class Provider:
    """The fake provider's process, driven through its stdin."""

    def __init__(self, args: argparse.Namespace, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "bench.agents.fake_server",
                "--rpm",
                str(args.rpm),
                "--burst",
                str(args.burst),
                "--latency",
                args.latency,
                "--seed",
                str(args.seed),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.base_url = self._read()["base_url"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake provider exited; see its log")
        data: dict[str, Any] = json.loads(line)
        return data

    def command(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, RuntimeError):
                self.command("quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def case_command(tool: str, args: argparse.Namespace, base_url: str) -> list[str]:
    common = ["--base-url", base_url, "--timeout", str(args.timeout)]
    if tool == "pydantic-ai":
        return [PYTHON, "-m", "bench.agents.pydantic_ai_case", "--runs", str(args.runs), *common]
    if tool == "plain":
        return [PYTHON, "-m", "bench.agents.plain_case", "--runs", str(args.plain_runs), *common]
    if tool == "plain-async":
        cmd = [PYTHON, "-m", "bench.agents.plain_async_case", "--runs", str(args.runs), *common]
        return [*cmd, "--rpm", str(args.rpm)]
    cmd = [PYTHON, "-m", "bench.agents.rota_case", "--dsn", f"{PG}/rota_bench_agents", *common]
    cmd += ["--runs", str(args.runs), "--rpm", str(args.rpm)]
    cmd += ["--concurrency", str(args.concurrency)]
    if args.rota_burst is not None:
        cmd += ["--burst-s", str(args.rota_burst)]
    if args.profile:
        inner = cmd
        spy = str(REPO_ROOT / ".venv-bench" / "bin" / "py-spy")
        out = str(Path(args.profile) / "rota-worker.txt")
        cmd = [
            spy,
            "record",
            "--format",
            "raw",
            "--rate",
            "100",
            "--nonblocking",
            "--gil",
            "-o",
            out,
            "--",
        ]
        cmd += inner
    return cmd


def run_case(tool: str, args: argparse.Namespace, provider: Provider, logs: Path) -> dict[str, Any]:
    provider.command("reset")
    cmd = case_command(tool, args, provider.base_url)
    log_path = logs / f"{tool}.log"
    print(f"[agent_fanout] {tool}: {shlex.join(cmd)}", file=sys.stderr)
    env = {**os.environ, "ANTHROPIC_API_KEY": "test"}
    started = time.monotonic()
    with log_path.open("w") as log:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=args.timeout + 120,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"error": f"no result; see {log_path}"}
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {args.timeout + 120:g}s; see {log_path}"}
    result["provider"] = provider.command("stats")
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print("   " + json.dumps(result), file=sys.stderr)
    return result


def bound(args: argparse.Namespace) -> dict[str, float]:
    low, high = (float(x) for x in args.latency.split(","))
    rate = args.rpm / 60.0
    calls = TURNS * args.runs
    burst = 1 + math.floor(args.burst * rate + 1e-9)
    chain = max(
        sum(latency(args.seed, i, t, low, high) for t in range(1, TURNS + 1))
        for i in range(args.runs)
    )
    sending = (calls - burst) / rate + low
    return {
        "bound_s": max(sending, chain),
        "sending_s": sending,
        "chain_s": chain,
        "calls": calls,
        "burst": burst,
        "rate": rate,
        "low": low,
    }


def row(tool: str, r: dict[str, Any], b: dict[str, float], args: argparse.Namespace) -> list[str]:
    provider = r.get("provider", {})
    answered = provider.get("accepted", 0)
    if "error" in r and "wall_s" not in r:
        return (
            [tool, "error", str(answered), str(provider.get("refused_429", "?"))]
            + ["-"] * 5
            + [r["error"]]
        )
    runs_ok = f"{r.get('succeeded', 0):,} / {r.get('runs', 0):,}"
    wall = r["wall_s"]
    if tool == "plain":
        per_run = wall / max(1, r["runs"])
        scale = args.runs / r["runs"]
        wall_text = f"{fmt(per_run * args.runs)} (extrapolated: {r['runs']} runs x {scale:g})"
        ratio = f"{per_run * args.runs / b['bound_s']:.1f} (extrapolated)"
    else:
        wall_text = fmt(wall, 1)
        ratio = f"{wall / b['bound_s']:.2f}"
        if r.get("failed"):  # the bound is for every run answered; this is not comparable
            ratio += f" (not comparable: {r['failed']:,} runs failed)"
    cpu = f"{r['cpu_s'] / answered * 1000:.2f}" if answered else "-"
    if "peak_rss_kib" in r and r.get("peak_concurrent"):
        growth = r["peak_rss_kib"] - r["baseline_rss_kib"]
        memory = f"{growth / r['peak_concurrent']:.0f}"
    else:
        memory = "n/a"
    return [
        tool,
        runs_ok,
        f"{answered:,}",
        f"{provider.get('refused_429', '?'):,}",
        wall_text,
        ratio,
        cpu,
        memory,
        f"{r.get('peak_concurrent', '-')}",
        r.get("config", ""),
    ]


def cpu_ms_per_call(r: dict[str, Any]) -> float | None:
    answered = r.get("provider", {}).get("accepted", 0)
    return r["cpu_s"] / answered * 1000 if answered and "cpu_s" in r else None


def verdict(results: dict[str, dict[str, Any]], b: dict[str, float]) -> str:
    """rota against the goals, the plain SDK loop measured in this same run."""
    rota, plain = results.get("rota", {}), results.get("plain", {})
    rota_cpu, plain_cpu = cpu_ms_per_call(rota), cpu_ms_per_call(plain)
    if rota_cpu is None or plain_cpu is None or "wall_s" not in rota:
        return "Goals: not judged (rota and the plain loop must both have run)."
    over = rota_cpu - plain_cpu
    ratio = rota["wall_s"] / b["bound_s"]
    cpu_goal, wall_goal = GOALS["cpu_ms_over_plain"], GOALS["wall_over_bound"]
    return (
        f"Goals: CPU per model call {rota_cpu:.2f} ms = plain SDK loop {plain_cpu:.2f} ms "
        f"+ {over:.2f} ms (goal <= +{cpu_goal:g}: {'met' if over <= cpu_goal else 'NOT met'}); "
        f"wall / bound {ratio:.2f} (goal <= {wall_goal:g}) with {rota.get('failed', '?')} runs "
        f"failed: {'met' if ratio <= wall_goal and not rota.get('failed') else 'NOT met'}."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rpm", type=float, default=3000)
    p.add_argument("--latency", default="1,3", help="low,high seconds per model call")
    p.add_argument("--burst", type=float, default=1.0, help="provider bucket, seconds of rate")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1000, help="rota worker slots")
    p.add_argument("--plain-runs", type=int, default=20)
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--timeout", type=float, default=240, help="seconds per case")
    p.add_argument("--rota-burst", type=float, help="rota's RateLimit(burst_s=...)")
    p.add_argument("--profile", metavar="DIR", help="py-spy rota's worker (raw stacks)")
    p.add_argument("--logs", default="/tmp/rota_bench_agents", help="case logs go here")
    args = p.parse_args()
    tools = [t for t in TOOLS if t in args.tools.split(",")]
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)

    b = bound(args)
    results: dict[str, dict[str, Any]] = {}
    with (logs / "provider.log").open("w") as provider_log:
        provider = Provider(args, provider_log)
        try:
            for tool in tools:
                results[tool] = run_case(tool, args, provider, logs)
        finally:
            provider.close()

    low, high = args.latency.split(",")
    print(
        f"Agent fan-out: {args.runs:,} agent runs x {TURNS} model calls against the fake "
        f"Anthropic API in its own process: latency uniform {low}-{high} s per call (fixed per "
        f"run and turn, seed {args.seed}), limit {args.rpm:,.0f} requests/min enforced by the "
        f"provider (bucket of {args.burst:g} s = {b['burst']} requests; 429 + retry-after)."
    )
    print(
        f"Lower bound = max((C - B) / rate + L_min, max over runs of L1 + L2 + L3) = "
        f"max(({b['calls']:,} - {b['burst']}) / {b['rate']:g} + {b['low']:g}, "
        f"{b['chain_s']:.2f}) = {b['bound_s']:.2f} s."
    )
    print(f"Machine: {machine()}")
    command = [".venv-bench/bin/python", "-m", "bench.agent_fanout", *sys.argv[1:]]
    print(f"Command: {shlex.join(command)}\n")
    print(
        table(
            [
                "tool",
                "runs ok",
                "model calls answered",
                "429s received",
                "wall s",
                f"wall / bound (goal <= {GOALS['wall_over_bound']:g})",
                f"CPU ms per model call (goal <= plain + {GOALS['cpu_ms_over_plain']:g})",
                "peak RSS KiB per concurrent run",
                "peak concurrent runs",
                "configuration",
            ],
            [row(tool, results[tool], b, args) for tool in tools],
        )
    )
    print()
    print(verdict(results, b))
    for tool in tools:
        r = results[tool]
        extra = {
            k: r[k]
            for k in (
                "errors",
                "limit_takes",
                "peak_db_connections",
                "worker_retried",
                "elapsed_s",
                "error",
            )
            if r.get(k)
        }
        provider = r.get("provider", {})
        print(
            f"- {tool}: provider saw {provider.get('calls', 0):,} requests, answered by turn "
            f"{provider.get('accepted_by_turn')}, peak {provider.get('peak_in_flight')} in "
            f"flight, retry-after sent {provider.get('retry_after_sent')}; "
            f"{json.dumps(extra)}"
        )


if __name__ == "__main__":
    main()
