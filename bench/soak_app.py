"""The app the soak serves with `rota worker` and `rota scheduler` (bench/soak.py).

- `soak_noop`: a job that does nothing, the bulk of the offered load and the scale backlog;
- `soak_flow`: a three-step workflow of no-op steps (three checkpoints a run);
- `soak_tick`: every second, from both schedulers (one run a second: the tick is claimed once).

SOAK_PROFILE=path makes the process profile its main thread with cProfile (timed by the
process's CPU clock, so that waiting costs nothing) from import to exit and write the stats
there: the scale phase's profiled worker, whose event loop runs on that thread.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import time
from typing import Any

from rota import App, RunContext, every

PROFILE_ENV = "SOAK_PROFILE"

app = App()


@app.job
async def soak_noop(ctx: Any, payload: Any) -> None:
    """Nothing: what is measured is the queue around it."""


def _nothing() -> None:
    """A step's body: nothing, but checkpointed."""


@app.workflow(name="soak_flow")
async def soak_flow(ctx: RunContext, n: int) -> int:
    """Three checkpointed no-op steps."""
    for step in ("s1", "s2", "s3"):
        await ctx.step(step, _nothing)
    return n


@app.job(schedule=every("1s"), overlap="allow")
def soak_tick(ctx: Any) -> None:
    """Fires every second under the schedulers."""


def _start_profile(path: str) -> None:
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    atexit.register(lambda: (profiler.disable(), profiler.dump_stats(path)))


if os.environ.get(PROFILE_ENV):
    _start_profile(os.environ[PROFILE_ENV])
