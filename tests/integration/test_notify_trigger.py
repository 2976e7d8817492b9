"""on_notify: a PostgreSQL NOTIFY on a user's channel becomes a stored event and a run."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from rota import App, ConfigError, on_notify
from rota.scheduler import Scheduler


def test_notify_on_a_channel_enqueues_a_run(pg_schema_url: str) -> None:
    app = App(pg_schema_url)

    @app.job(trigger=on_notify("orders_changed", filter={"kind": "order"}))
    def sync_orders(ctx, payload):
        return payload["id"]

    async def scenario() -> None:
        scheduler = Scheduler(app)
        task = asyncio.create_task(scheduler.run())
        try:
            deadline = time.monotonic() + 20
            while not app.store.events():
                assert time.monotonic() < deadline, "no event stored from NOTIFY"
                with psycopg.connect(pg_schema_url, autocommit=True) as conn:
                    conn.execute(
                        """SELECT pg_notify('orders_changed', '{"kind": "order", "id": 7}')"""
                    )
                    conn.execute("SELECT pg_notify('orders_changed', 'not json')")
                await asyncio.sleep(0.2)
        finally:
            scheduler.stop()
            await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    events = app.store.events("orders_changed")
    assert {e.source for e in events} == {"pg-notify"}
    assert {"kind": "order", "id": 7} in [e.payload for e in events]
    assert "not json" in [e.payload for e in events]  # stored, but filtered out
    app.drain()
    runs = app.runs(names=["sync_orders"])
    assert runs and {r.result for r in runs} == {7}
    assert all(r.trigger == "event" for r in runs)
    app.close()


def test_bad_channel_name() -> None:
    with pytest.raises(ConfigError, match="lower-case SQL identifier"):
        on_notify("Orders-Changed")
