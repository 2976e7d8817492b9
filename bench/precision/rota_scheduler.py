"""rota's scheduler alone in a process: `Scheduler(app).run()` until a deadline.

    python -m bench.precision.rota_scheduler URL --schedules 1000 --until EPOCH \
        --window-start EPOCH --window-end EPOCH

Prints ONE JSON line: when the schedules were synced and the process's CPU (user + sys, all
threads, from getrusage) over the measurement window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from rota.scheduler import Scheduler

from .measure import CpuSampler, Window, process_cpu_s
from .rota_app import build_app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--schedules", type=int, required=True)
    p.add_argument("--until", type=float, required=True)
    p.add_argument("--window-start", type=int, required=True)
    p.add_argument("--window-end", type=int, required=True)
    p.add_argument("--batch", type=int, default=None, help="Scheduler(batch=...); rota's default")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    app = build_app(args.url, args.schedules)
    scheduler = Scheduler(app) if args.batch is None else Scheduler(app, batch=args.batch)
    sampler = CpuSampler(Window(args.window_start, args.window_end), {"cpu": process_cpu_s})
    sampler.start()
    synced = scheduler.sync()  # run() syncs again: a no-op, the rows are there by then
    synced_at = time.time()

    async def until_deadline() -> None:
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(max(0.0, args.until - time.time()))
        scheduler.stop()
        await task

    asyncio.run(until_deadline())
    app.close()
    result = {"synced": len(synced), "synced_at": synced_at, "pid": os.getpid()}
    print(json.dumps({**result, **sampler.result()}), flush=True)


if __name__ == "__main__":
    main()
