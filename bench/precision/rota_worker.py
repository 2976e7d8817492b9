"""rota's worker alone in a process: runs the no-op schedule runs until SIGTERM.

    python -m bench.precision.rota_worker URL --schedules 1000 --concurrency 256 \
        --poll 0.05 --window-start EPOCH --window-end EPOCH

Prints ONE JSON line: its CPU over the window, and the lateness seen inside the job function
(time.time() at the top of the job - run_after), a cross-check of the store's started_at.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from .measure import CpuSampler, Record, Window, process_cpu_s, summarize
from .rota_app import build_app, names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--schedules", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--window-start", type=int, required=True)
    p.add_argument("--window-end", type=int, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    seen: list[tuple[str, float, float]] = []
    app = build_app(args.url, args.schedules, lambda *r: seen.append(r))
    window = Window(args.window_start, args.window_end)
    sampler = CpuSampler(window, {"cpu": process_cpu_s}).start()
    worker = app.worker(concurrency=args.concurrency, poll_interval_s=args.poll)

    async def until_signalled() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        await worker.run()

    asyncio.run(until_signalled())
    app.close()
    in_function = summarize(
        (Record(name, round(after), now - after) for name, after, now in seen),
        names(args.schedules),
        window,
    )
    result = {
        "pid": os.getpid(),
        "claimed": worker.stats.claimed,
        "succeeded": worker.stats.succeeded,
        "in_function": {k: in_function.get(k) for k in ("runs", "p50_ms", "p99_ms", "max_ms")},
    }
    print(json.dumps({**result, **sampler.result()}), flush=True)


if __name__ == "__main__":
    main()
