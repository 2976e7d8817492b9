"""Run one peer benchmark and print ONE JSON line with its result.

    python -m bench.peers.run_peer --peer dbos --bench queue \
        --dsn postgresql://postgres@127.0.0.1:5432/rota_bench_dbos \
        --jobs 20000 --concurrency 32

    python -m bench.peers.run_peer --peer dbos --bench steps \
        --dsn sqlite:////tmp/rota_bench_dbos.sqlite --workflows 200 --steps 20

Run from the repository root with the peers' virtualenv
(``.venv-bench/bin/python``). The database named in --dsn is dropped and
recreated. The process is killed after --timeout seconds (+60s grace) even if
a peer hangs; on failure it prints ``{"error": ...}`` and exits non-zero.
``invoke()`` runs this in a fresh subprocess from another interpreter.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a file: make ``bench.peers`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    __package__ = "bench.peers"

from bench.peers import PEERS, common

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # "rota" (bench/peers/rota_peer.py) runs rota itself through the same harness.
    p.add_argument("--peer", required=True, choices=(*PEERS, "rota"))
    p.add_argument("--bench", required=True, choices=("queue", "steps"))
    p.add_argument("--dsn", required=True)
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--workflows", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--timeout", type=float, default=common.DEFAULT_TIMEOUT_S)
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="queue: drain this many jobs first, untimed (the same warm-up for every tool)",
    )
    p.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip the untimed ANALYZE between enqueue and drain",
    )
    args = p.parse_args(argv)

    common.start_clock(args.timeout)
    common.ANALYZE_AFTER_ENQUEUE = not args.no_analyze
    # Hard backstop: dump stacks and exit if anything hangs past the timeout.
    faulthandler.dump_traceback_later(args.timeout + 60, exit=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    module = importlib.import_module(f"bench.peers.{args.peer}_peer")
    t0 = time.perf_counter()
    try:
        if args.bench == "queue":
            if args.warmup:
                module.queue_throughput(args.dsn, args.warmup, args.concurrency)
            result = module.queue_throughput(args.dsn, args.jobs, args.concurrency)
        else:
            result = module.step_overhead(args.dsn, args.workflows, args.steps)
    except BaseException as exc:
        print(json.dumps({"tool": args.peer, "bench": args.bench, "error": repr(exc)}), flush=True)
        sys.stdout.flush()
        os._exit(1)  # don't wait for a peer's non-daemon threads
    if result is not None:
        result["wall_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # ditto: the result is out, leftover peer threads must not block exit


def invoke(
    peer: str,
    bench: str,
    dsn: str,
    *,
    python: str = os.path.join(REPO_ROOT, ".venv-bench", "bin", "python"),
    timeout: float = common.DEFAULT_TIMEOUT_S,
    **params: int,
) -> dict | None:
    """Run one benchmark in a fresh subprocess and return its parsed result."""
    cmd = [
        python,
        "-m",
        "bench.peers.run_peer",
        "--peer",
        peer,
        "--bench",
        bench,
        "--dsn",
        dsn,
        "--timeout",
        str(timeout),
    ]
    for key, value in params.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout + 120)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{peer}/{bench} printed nothing; stderr:\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if proc.returncode != 0 or (result and "error" in result):
        raise RuntimeError(f"{peer}/{bench} failed: {lines[-1]}\n{proc.stderr[-2000:]}")
    return result


if __name__ == "__main__":
    sys.exit(main())
