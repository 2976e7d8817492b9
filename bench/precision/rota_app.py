"""The app that rota's scheduler and worker processes both build: N no-op schedules."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rota import App, every

Recorder = Callable[[str, float, float], None]


def names(schedules: int) -> list[str]:
    return [f"s{i:04d}" for i in range(schedules)]


def build_app(url: str, schedules: int, record: Recorder | None = None) -> App:
    """Every schedule fires every second and does nothing; `record(name, run_after, now)`,
    if given, is called first thing in the job (the worker's in-function lateness)."""
    app = App(url)
    for name in names(schedules):

        @app.job(schedule=every("1s"), overlap="allow", name=name)
        async def noop(ctx: Any) -> None:
            if record is not None:
                record(ctx.run.name, ctx.run.run_after, time.time())

    return app
