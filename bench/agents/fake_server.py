"""The fake Anthropic provider for bench/agent_fanout.py, in a process of its own (so that its
CPU is not counted as any tool's).

    python -m bench.agents.fake_server --rpm 3000 --burst 1.0 --latency 1,3 --seed 1

It is rota's FakeAnthropicServer (the Messages API wire format, through the real SDKs) with a
handler that plays the benchmark agent's script and behaves like a rate-limited provider:

- Replies by turn: turn 1 and 2 call the `lookup` tool, turn 3 answers. The turn is derived
  from the request's messages, the run from its first user message.
- Latency: each (run, turn) is delayed by `latency(seed, run, turn)` (uniform in the range,
  the same for every tool). Refusals are answered at once.
- Rate limit: `--rpm` requests per minute, enforced the way providers describe it (a token
  bucket refilled continuously, not a window reset each minute) with a bucket of `--burst`
  seconds' worth of requests: GCRA with that tolerance, so from idle 1 + burst x rpm / 60
  requests are admitted back to back. A request over the limit is answered 429
  `rate_limit_error` with `retry-after` in whole seconds (rounded up), as Anthropic does, and
  is not charged.

It prints `{"base_url": ...}` on its first line, then answers commands on stdin, one per line,
with one JSON line each: `reset` (empty the bucket and the counters), `stats`, `quit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import sys
import threading
import time
from typing import Any

from rota.testing import FakeAnthropicServer, FakeReply, FakeToolCall

from .common import TURNS, latency, run_index, turn_of


class ProviderScript:
    """The handler: rate limit, then the scripted reply with its latency."""

    def __init__(self, rpm: float, burst_s: float, low: float, high: float, seed: int) -> None:
        self.interval = 60.0 / rpm
        self.burst_s = burst_s
        self.low, self.high, self.seed = low, high, seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._tat = 0.0
            self.accepted = [0] * (TURNS + 1)  # by turn; [0]: requests we could not place
            self.refused = 0
            self.first_at: float | None = None
            self.last_at: float | None = None
            self._ends: list[float] = []  # when the accepted requests in flight will answer
            self.peak_in_flight = 0
            self.retry_after_sent: dict[int, int] = {}

    def __call__(self, body: dict[str, Any]) -> FakeReply:
        now = time.monotonic()
        run, turn = run_index(body), turn_of(body)
        with self._lock:
            tat = max(self._tat, now)
            wait = tat - now - self.burst_s
            if wait > 0:
                self.refused += 1
                seconds = max(1, math.ceil(wait))
                self.retry_after_sent[seconds] = self.retry_after_sent.get(seconds, 0) + 1
                refusal = FakeReply.error(429, retry_after=seconds)
                return dataclasses.replace(refusal, latency=0.0)
            self._tat = tat + self.interval
            delay = (
                latency(self.seed, run, turn, self.low, self.high) if run is not None else self.high
            )
            self.accepted[turn if run is not None and turn <= TURNS else 0] += 1
            self.first_at = now if self.first_at is None else self.first_at
            self.last_at = now
            heapq.heappush(self._ends, now + delay)
            while self._ends and self._ends[0] <= now:
                heapq.heappop(self._ends)
            self.peak_in_flight = max(self.peak_in_flight, len(self._ends))
        if run is None or turn > TURNS:
            return FakeReply(status=400, message="not a benchmark request", latency=0.0)
        if turn < TURNS:
            call = FakeToolCall("lookup", {"order": run, "step": turn})
            return FakeReply(tool_calls=(call,), latency=delay)
        return FakeReply(text=f"Order {run} is done.", latency=delay)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            span = 0.0
            if self.first_at is not None and self.last_at is not None:
                span = self.last_at - self.first_at
            return {
                "calls": sum(self.accepted) + self.refused,
                "accepted": sum(self.accepted),
                "accepted_by_turn": self.accepted[1:],
                "unrecognised": self.accepted[0],
                "refused_429": self.refused,
                "retry_after_sent": self.retry_after_sent,
                "accept_span_s": round(span, 3),
                "peak_in_flight": self.peak_in_flight,
            }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rpm", type=float, default=3000)
    p.add_argument("--burst", type=float, default=1.0, help="bucket size in seconds of rate")
    p.add_argument("--latency", default="1,3", help="low,high seconds per model call")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    low, high = (float(x) for x in args.latency.split(","))
    script = ProviderScript(args.rpm, args.burst, low, high, args.seed)
    srv = FakeAnthropicServer(record=False)
    srv.handler = script
    srv.start()
    print(json.dumps({"base_url": srv.base_url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            script.reset()
            print("{}", flush=True)
        elif command == "stats":
            print(json.dumps(script.stats()), flush=True)
        elif command == "quit":
            break
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    srv.stop()


if __name__ == "__main__":
    main()
