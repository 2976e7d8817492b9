"""The paths by which a database failure could still have reached a run's user-level outcome,
closed, on both databases; and the one-line outage log that every process kind shares.

The store fails on chosen statements with the driver's own operational error (see Blips in
test_db_blip.py); the processes' own tests stop a real PostgreSQL (test_db_outage.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from test_db_blip import Blips

from rota import Agent, App, RunState, ToolContext, every, tool
from rota.errors import StoreUnavailable
from rota.scheduler import Scheduler
from rota.storage.outage import Outage
from rota.testing import ScriptedModel, call, say

OWN_RUN = "SELECT * FROM rota_runs WHERE id"  # what app.store.get_run sends


# -- agents: a tool, a guard or a success check meeting rota's own database -------------------


def test_a_tool_that_meets_a_database_blip_is_run_again_not_reported_as_failed(
    app: App,
) -> None:
    calls: list[str] = []

    @tool
    def my_state(ctx: ToolContext[None], field: str) -> str:
        """A field of the agent's own run, read from rota's own database."""
        assert ctx.run_id is not None
        calls.append(ctx.run_id)
        return str(getattr(app.store.get_run(ctx.run_id), field))

    model = ScriptedModel("reader", script=[call(my_state, field="state"), say("done")])
    app.agent(Agent("reader", model, "Read.", tools=[my_state]))
    handle = app.run_now("reader", "go")
    blips = Blips(app.store)
    blips.fail(OWN_RUN, times=1)
    app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    run = handle.get()
    assert (run.state, run.failures, run.result) == (RunState.SUCCEEDED, 0, "done")
    assert calls == [handle.id, handle.id]  # the blip interrupted the first execution
    (result,) = model.requests[-1].messages[-1].tool_results
    assert (result.is_error, result.content) == (False, "RUNNING")  # never "tool failed"


def test_a_success_check_that_meets_a_database_blip_does_not_refuse_the_answer(
    app: App,
) -> None:
    checks: list[str] = []

    def recorded(output: Any) -> bool:
        checks.append(str(output))
        app.store.count_states()  # e.g. a check against rota's own records
        return True

    model = ScriptedModel("checked", script=[say("fine")])
    app.agent(Agent("checked", model, "Answer.", success=recorded))
    handle = app.run_now("checked", "go")
    blips = Blips(app.store)
    blips.fail("GROUP BY state", times=1, when=lambda _: bool(checks))
    app.drain(poll_interval_s=0.01)

    assert blips.pending == []
    run = handle.get()
    assert (run.state, run.failures, run.result) == (RunState.SUCCEEDED, 0, "fine")
    assert model.calls == 1  # the answer was checkpointed: resumed, not asked again
    assert checks == ["fine", "fine"]


# -- the scheduler: the database away when it starts ------------------------------------------


def test_a_scheduler_started_while_the_database_is_away_waits_for_it_then_fires(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job(schedule=every("1s"), overlap="allow")
    def beat(ctx: Any) -> None:
        return None

    app.store.migrate()
    blips = Blips(app.store)
    blips.fail("FROM rota_schedules", times=3)  # the sync's read of the schedule rows
    scheduler = Scheduler(app, max_sleep_s=0.01)

    async def until_a_tick() -> None:
        running = asyncio.create_task(scheduler.run())
        while not await asyncio.to_thread(app.store.ticks, limit=1):
            assert not running.done(), running
            await asyncio.sleep(0.02)
        scheduler.stop()
        await running

    with caplog.at_level(logging.INFO, logger="rota.scheduler"):
        asyncio.run(asyncio.wait_for(until_a_tick(), 60))

    assert blips.pending == []
    lines = [r for r in caplog.records if r.name == "rota.scheduler"]
    assert [r.levelname for r in lines if "database unavailable" in r.getMessage()] == ["WARNING"]
    assert len([r for r in lines if "database works again" in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in lines)


# -- the outage log --------------------------------------------------------------------------


def test_an_outage_logs_one_line_when_it_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("rota.test"), "thing", base_s=0.5, cap_s=2.0)
    gone = StoreUnavailable("the database is unavailable: Connection refused")
    with caplog.at_level(logging.INFO, logger="rota.test"):
        delays = [outage.failed(gone) for _ in range(50)]
        assert outage.down
        outage.worked()
        outage.worked()  # nothing more to say

    assert not outage.down
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "thing: database unavailable (Connection refused); "
            "retrying with back-off until it is back",
        ),
        ("INFO", caplog.records[1].getMessage()),
    ]
    assert caplog.records[1].getMessage().startswith("thing: database works again after ")
    assert caplog.records[1].getMessage().endswith("s (50 failed tries)")
    # Capped exponential back-off with jitter: never more than the cap, never nothing.
    assert 0.25 <= delays[0] <= 0.5
    assert all(1.0 <= d <= 2.0 for d in delays[3:])
    assert len(set(delays[3:])) > 1  # jittered: processes that lost it do not return as one


def test_an_error_that_is_not_an_outage_keeps_its_traceback_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("rota.test"), "thing", base_s=0.5)
    with caplog.at_level(logging.INFO, logger="rota.test"):
        for _ in range(2):
            outage.failed(KeyError("a bug, not the database"))

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "thing failed; retrying")
    ] * 2
    assert all(r.exc_info is not None for r in caplog.records)
