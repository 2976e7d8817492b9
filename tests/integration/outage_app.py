"""The app the database-outage tests serve with `rota worker`, `rota scheduler` and
`rota serve` while they stop its PostgreSQL server under them (see test_db_outage.py)."""

from __future__ import annotations

import os
import time
from typing import Any

from rota import App, every


def make_app(database_url: str | None) -> App:
    app = App(database_url)

    @app.job
    def echo(ctx: Any, n: int) -> int:
        """A run enqueued once the database is back."""
        return n

    @app.job
    def slow(ctx: Any, seconds: float) -> float:
        """A run in flight when the database goes away: its outcome is written once it is
        back."""
        time.sleep(seconds)
        return seconds

    @app.job(schedule=every("1s"), overlap="allow")
    def tick(ctx: Any) -> None:
        """Fires every second under `rota scheduler`."""
        return None

    return app


app = make_app(os.environ.get("ROTA_DATABASE_URL"))  # opens nothing until first used
