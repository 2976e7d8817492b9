"""Durable waits on both databases: ctx.sleep and ctx.wait_for_event park the run (WAITING,
no lease, no worker slot), survive restarts, and resolve exactly once, even when the event
races the wait's registration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from fake_time import HOUR, START
from together import together
from typer.testing import CliRunner

from rota import App, FakeClock, RunHandle, RunState
from rota.cli import app as cli
from rota.ids import new_id
from rota.model import Event, NewRun, NewWait
from rota.storage import SqlStore
from rota.storage.waits import event_topic, payload_matches


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[App]:
    """An App on the fake `clock` (the shared `app` fixture runs on real time)."""
    a = App(database_url, clock=clock)
    yield a
    a.close()


def waiter(app: App, **wait: Any) -> Callable[..., Any]:
    """A workflow that waits for an event and returns what it got."""

    name, event_name = wait.pop("name", "waiter"), wait.pop("event", "invoice.paid")

    @app.workflow(name=name)
    async def flow(ctx: Any) -> Any:
        event = await ctx.wait_for_event(event_name, **wait)
        return (
            None
            if event is None
            else {"id": event.id, "name": event.name, "payload": event.payload}
        )

    return flow


def states(app: App, *handles: Any) -> list[str]:
    return [h.state for h in handles]


def done(handle: RunHandle) -> Any:
    """The result of a run that must have succeeded by now (never blocks)."""
    run = handle.get()
    assert run.state == RunState.SUCCEEDED, (run.state, run.error)
    return run.result


# -- sleep -------------------------------------------------------------------------------


def test_sleep_parks_the_run_and_resumes_once_the_time_has_passed(
    app: App, clock: FakeClock
) -> None:
    calls: list[str] = []

    @app.workflow
    async def nap(ctx: Any) -> str:
        await ctx.step("before", calls.append, "before")
        await ctx.sleep("1h")
        await ctx.step("after", calls.append, "after")
        return "rested"

    handle = app.run_now("nap")
    assert app.drain().parked == 1
    run = handle.get()
    assert run.state == RunState.WAITING
    assert (run.lease_owner, run.run_after) == (None, START + HOUR)

    clock.advance(HOUR - 1)
    app.drain()
    assert handle.state == "WAITING"

    clock.advance(1)
    app.drain()
    assert done(handle) == "rested"
    assert calls == ["before", "after"]  # "before" was not executed again on resume
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert list(steps) == ["before", "sleep", "after"]
    assert steps["sleep"].result == {"until": START + HOUR}
    assert (steps["sleep"].started_at, steps["sleep"].finished_at) == (START, START + HOUR)
    (wait,) = app.store.waits([handle.id])
    assert (wait.kind, wait.status, wait.deadline) == ("sleep", "resolved", START + HOUR)


def test_sleep_of_zero_does_not_park_and_sleeps_accept_seconds_and_timedeltas(
    app: App, clock: FakeClock
) -> None:
    from datetime import timedelta

    @app.workflow
    async def naps(ctx: Any) -> str:
        await ctx.sleep(0)
        await ctx.sleep(90)
        await ctx.sleep(timedelta(minutes=1))
        return "ok"

    handle = app.run_now("naps")
    app.drain()
    assert handle.get().run_after == START + 90
    clock.advance(90)
    app.drain()
    assert handle.get().run_after == START + 150
    clock.advance(60)
    app.drain()
    assert done(handle) == "ok"
    assert [s.key for s in app.store.steps(handle.id)] == ["sleep", "sleep#2", "sleep#3"]


# -- wait_for_event ----------------------------------------------------------------------


def test_a_later_event_resolves_the_wait_and_queues_the_run(app: App, clock: FakeClock) -> None:
    waiter(app, match={"id": 7})
    handle = app.run_now("waiter")
    app.drain()
    assert handle.state == "WAITING"

    clock.advance(5)
    app.emit("invoice.paid", {"id": 8})  # a different invoice: still waiting
    app.emit("invoice.sent", {"id": 7})  # a different event
    assert handle.state == "WAITING"
    emitted = app.emit("invoice.paid", {"id": 7, "amount": 500}, idempotency_key="evt-1")
    assert handle.state == "ENQUEUED"  # woken by the emit itself, before any worker looks

    app.drain()
    assert done(handle) == {
        "id": emitted.event_id,
        "name": "invoice.paid",
        "payload": {"id": 7, "amount": 500},
    }
    (step,) = app.store.steps(handle.id)
    assert step.key == "event:invoice.paid"
    assert step.result["event"]["idempotency_key"] == "evt-1"
    (wait,) = app.store.waits([handle.id])
    assert (wait.status, wait.event_id, wait.resolved_at) == (
        "resolved",
        emitted.event_id,
        START + 5,
    )


def test_an_event_stored_before_the_wait_counts_back_to_the_run_creation(
    app: App, clock: FakeClock
) -> None:
    app.emit("invoice.paid", {"n": 1})  # before the run existed: not in the default window
    clock.advance(1)
    waiter(app, name="default")
    waiter(app, name="narrow", lookback=0)
    waiter(app, name="wide", lookback="1h")
    handles = [app.run_now(name) for name in ("default", "narrow", "wide")]
    clock.advance(1)
    second = app.emit("invoice.paid", {"n": 2})  # after the runs were created, before they ran
    clock.advance(1)

    stats = app.drain()
    assert stats.parked == 1  # only "narrow" (events from its call onwards) had to wait
    assert done(handles[0])["id"] == second.event_id
    assert done(handles[2])["payload"] == {"n": 1}  # the earliest in its window
    assert handles[1].state == "WAITING"


def test_one_event_satisfies_one_wait_of_a_run(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def twice(ctx: Any) -> list[Any]:
        first = await ctx.wait_for_event("tick")
        second = await ctx.wait_for_event("tick")
        return [first.payload, second.payload]

    handle = app.run_now("twice")
    app.emit("tick", 1)
    app.drain()
    assert handle.state == "WAITING"  # the first wait took event 1; the second waits
    app.emit("tick", 2)
    app.drain()
    assert done(handle) == [1, 2]
    assert [s.key for s in app.store.steps(handle.id)] == ["event:tick", "event:tick#2"]


def test_one_event_wakes_every_run_waiting_for_it(app: App) -> None:
    waiter(app)
    handles = [app.run_now("waiter") for _ in range(3)]
    app.drain()
    assert states(app, *handles) == ["WAITING"] * 3
    emitted = app.emit("invoice.paid", {"id": 1})
    assert states(app, *handles) == ["ENQUEUED"] * 3
    app.drain()
    assert {done(h)["id"] for h in handles} == {emitted.event_id}


def test_waiting_for_any_of_several_events(app: App) -> None:
    waiter(app, event=["invoice.paid", "invoice.voided"])
    handle = app.run_now("waiter")
    app.drain()
    (wait,) = app.store.waits([handle.id])
    assert wait.topics == (event_topic("invoice.paid"), event_topic("invoice.voided"))

    app.emit("invoice.voided", {"id": 3})
    app.drain()
    assert done(handle)["name"] == "invoice.voided"
    (wait,) = app.store.waits([handle.id])
    assert wait.status == "resolved"  # closed on every topic: a later "paid" wakes nothing
    app.emit("invoice.paid", {"id": 3})
    assert handle.state == "SUCCEEDED"


def test_match_compares_top_level_keys_as_json_values(app: App) -> None:
    waiter(app, match={"id": 1, "tags": ["a"]})
    handle = app.run_now("waiter")
    app.drain()
    for payload in (
        {"id": True, "tags": ["a"]},  # true is not 1
        {"id": "1", "tags": ["a"]},  # nor is "1"
        {"id": 1},  # a key is missing
        {"id": 1, "tags": ["a", "b"]},
        [1, ["a"]],  # not an object
        None,
    ):
        app.emit("invoice.paid", payload)
    assert handle.state == "WAITING"
    app.emit("invoice.paid", {"id": 1.0, "tags": ("a",), "note": "an extra key"})
    app.drain()
    assert done(handle)["payload"] == {"id": 1.0, "tags": ["a"], "note": "an extra key"}


def test_payload_matches_unit() -> None:
    assert payload_matches(None, 5) and payload_matches({}, None)
    assert payload_matches({"a": {"b": [1, None]}}, {"a": {"b": [1.0, None]}, "c": 2})
    assert not payload_matches({"a": {"b": [1]}}, {"a": {"b": [True]}})
    assert not payload_matches({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}})  # nested: whole value
    assert not payload_matches({"a": None}, {})  # a missing key is not null


def test_timeout_returns_none_and_is_recorded(app: App, clock: FakeClock) -> None:
    waiter(app, timeout="1d")
    handle = app.run_now("waiter")
    app.drain()
    assert handle.get().run_after == START + 86400  # due to time out then
    clock.advance(86400)
    app.emit("invoice.paid", {"id": 1})  # at the deadline: too late, even before any worker
    assert handle.state == "WAITING"  # has noticed that the deadline passed
    app.drain()
    assert done(handle) is None
    (step,) = app.store.steps(handle.id)
    assert step.result == {"event": None, "timed_out": True}
    assert step.finished_at == START + 86400
    (wait,) = app.store.waits([handle.id])
    assert (wait.status, wait.event_id) == ("timed_out", None)

    clock.advance(1)  # so that event 1 is older than the next run (out of its window)
    second = app.run_now("waiter")
    app.drain()
    clock.advance(86400 - 1)
    app.emit("invoice.paid", {"id": 2})  # just in time
    app.drain()
    assert done(second)["payload"] == {"id": 2}


def test_timeout_zero_takes_only_what_already_arrived(app: App, clock: FakeClock) -> None:
    waiter(app, timeout=0)
    first = app.run_now("waiter")
    app.drain()
    assert done(first) is None
    second = app.run_now("waiter")
    clock.advance(1)
    app.emit("invoice.paid", {"id": 5})
    clock.advance(1)
    assert app.drain().parked == 0
    assert done(second)["payload"] == {"id": 5}


# -- parking: slots, restarts, cancel ------------------------------------------------------


def test_a_waiting_run_holds_no_worker_slot(app: App) -> None:
    waiter(app)
    done: list[int] = []

    @app.job
    def work(ctx: Any, n: int) -> None:
        done.append(n)

    handle = app.run_now("waiter")
    app.run_many("work", [1, 2, 3])
    stats = app.drain(concurrency=1, prefetch=0)
    assert (stats.parked, stats.succeeded) == (1, 3)
    assert sorted(done) == [1, 2, 3]
    assert handle.state == "WAITING"
    assert app.store.count_states().get("RUNNING") is None


def test_a_parked_run_survives_a_restart(database_url: str, clock: FakeClock) -> None:
    executions: list[str] = []

    def make_app() -> App:
        new = App(database_url, clock=clock)

        @new.workflow
        async def order(ctx: Any, payload: dict[str, Any]) -> Any:
            await ctx.step("reserve", executions.append, "reserve")
            paid = await ctx.wait_for_event("order.paid", match={"order": payload["order"]})
            await ctx.step("ship", executions.append, "ship")
            return paid.payload

        return new

    first = make_app()
    handle = first.run_now("order", {"order": 42})
    first.drain()
    assert handle.state == "WAITING"
    first.close()

    second = make_app()  # a new process, as far as the database can tell
    second.emit("order.paid", {"order": 42, "total": 10})
    second.drain()
    assert second.get_run(handle.id).result == {"order": 42, "total": 10}
    assert executions == ["reserve", "ship"]
    second.close()


def test_cancelling_a_waiting_run_ends_it_and_its_wait(
    app: App, clock: FakeClock, database_url: str
) -> None:
    waiter(app, timeout="1h")
    handle = app.run_now("waiter")
    app.drain()
    result = CliRunner().invoke(cli, ["--database-url", database_url, "runs", "cancel", handle.id])
    assert result.exit_code == 0, result.output
    assert f"cancelled run {handle.id}" in result.output
    assert handle.state == "CANCELLED"
    assert app.store.waits([handle.id])[0].status == "cancelled"

    app.emit("invoice.paid", {"id": 1})
    clock.advance(HOUR)
    app.drain()
    assert handle.state == "CANCELLED"

    app.store.retry(handle.id, clock.now())  # a retried run registers its wait afresh: the
    assert app.drain().parked == 0  # event that came while it was cancelled is in its window
    assert done(handle)["payload"] == {"id": 1}


def test_cancel_requested_while_running_stops_the_run_instead_of_parking(app: App) -> None:
    @app.workflow
    async def flow(ctx: Any) -> None:
        app.store.cancel(ctx.run_id, app.clock.now())  # e.g. `rota runs cancel` meanwhile
        await ctx.sleep("1h")

    handle = app.run_now("flow")
    stats = app.drain()
    assert (stats.parked, stats.cancelled) == (0, 1)
    assert handle.state == "CANCELLED"
    assert app.store.waits([handle.id]) == []


def test_runs_list_and_show_say_what_a_run_waits_for(app: App, database_url: str) -> None:
    waiter(app, match={"id": 7}, timeout="1h")
    handle = app.run_now("waiter")
    app.drain()

    def rota(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--database-url", database_url, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = json.loads(rota("runs", "list", "--json"))
    assert listed[0]["state"] == "WAITING"
    assert listed[0]["waiting_for"]["names"] == ["invoice.paid"]
    assert listed[0]["waiting_for"]["match"] == {"id": 7}
    assert "invoice.paid" in rota("runs", "list")
    shown = rota("runs", "show", handle.id)
    assert "waiting for" in shown and "invoice.paid" in shown and '{"id":7}' in shown


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda ctx: ctx.sleep("soon"), "ConfigError", "ctx.sleep duration 'soon' is not a"),
        (lambda ctx: ctx.sleep(-1), "ConfigError", "must not be negative"),
        (
            lambda ctx: ctx.wait_for_event("x", timeout="-5s"),
            "ConfigError",
            "wait_for_event timeout '-5s' is not a duration",
        ),
        (
            lambda ctx: ctx.wait_for_event("x", lookback=-1),
            "ConfigError",
            "wait_for_event lookback must not be negative",
        ),
        (lambda ctx: ctx.wait_for_event(42), "ConfigError", "needs an event name"),
        (lambda ctx: ctx.wait_for_event([]), "ConfigError", "needs an event name"),
        (lambda ctx: ctx.wait_for_event("x", match=[1]), "ConfigError", "match must map"),
        (
            lambda ctx: ctx.wait_for_event("x", match={"when": {1, 2}}),
            "SerializationError",
            "the match of wait_for_event('x') is not JSON-serialisable",
        ),
    ],
)
def test_bad_wait_arguments_fail_the_run_with_a_clear_error(
    app: App, call: Callable[[Any], Any], error: str, message: str
) -> None:
    @app.workflow
    async def flow(ctx: Any) -> None:
        await call(ctx)

    handle = app.run_now("flow")
    app.drain()
    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.error["type"] == error
    assert message in run.error["message"]
    assert app.store.waits([handle.id]) == []


# -- with a live worker --------------------------------------------------------------------


def test_a_live_worker_wakes_on_the_event_and_on_the_deadline(app: App, clock: FakeClock) -> None:
    @app.workflow
    async def invoice(ctx: Any, payload: dict[str, Any]) -> Any:
        paid = await ctx.wait_for_event("invoice.paid", match=payload, timeout="1h")
        return None if paid is None else paid.payload

    paid, unpaid = app.run_now("invoice", {"id": 1}), app.run_now("invoice", {"id": 2})

    async def scenario() -> None:
        worker = app.worker(poll_interval_s=0.05)
        task = asyncio.create_task(worker.run())
        await until(lambda: app.store.count_states().get("WAITING") == 2)
        await asyncio.to_thread(app.emit, "invoice.paid", {"id": 1})
        await until(lambda: paid.state == "SUCCEEDED")
        assert unpaid.state == "WAITING"
        clock.advance(HOUR)  # the worker notices the deadline by itself
        await until(lambda: unpaid.state == "SUCCEEDED")
        worker.stop()
        await task

    asyncio.run(scenario())
    assert (done(paid), done(unpaid)) == ({"id": 1}, None)


def test_postgres_notify_wakes_a_worker_of_another_process(
    database_url: str, clock: FakeClock
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's; SQLite workers poll")
    worker_app, emitter = App(database_url, clock=clock), App(database_url, clock=clock)
    waiter(worker_app)
    handle = worker_app.run_now("waiter")

    async def scenario() -> None:
        worker = worker_app.worker(poll_interval_s=60)  # polling alone would not make it
        task = asyncio.create_task(worker.run())
        await until(lambda: handle.state == "WAITING")
        await asyncio.to_thread(emitter.emit, "invoice.paid", {"id": 9})  # no local wakers
        await until(lambda: handle.state == "SUCCEEDED")
        worker.stop()
        await task

    try:
        asyncio.run(scenario())
        assert done(handle)["payload"] == {"id": 9}
    finally:
        worker_app.close()
        emitter.close()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll off the loop until condition() holds (a generous timeout, not a threshold)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(condition):
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- exactly once under concurrency (store level) ----------------------------------------


def _running_run(store: SqlStore, now: float) -> tuple[str, int]:
    """A new run, claimed: as a worker executing it holds it."""
    run_id = new_id()
    name = f"flow-{run_id}"  # its own name: earlier runs, queued again, are not claimed
    store.enqueue([NewRun(run_id, name, "workflow", None, "manual", now, now)])
    (run,) = store.claim("w1", [name], 1, now, 30.0)
    return run.id, run.lease_token


def _event_wait(run_id: str, token: int, now: float, deadline: float | None = None) -> NewWait:
    return NewWait(
        run_id=run_id,
        lease_token=token,
        step_key="event:go",
        step_name="event:go",
        seq=0,
        kind="event",
        topics=(event_topic("go"),),
        detail={"names": ["go"], "match": {}},
        since=now,
        deadline=deadline,
        created_at=now,
    )


def test_an_event_racing_the_registration_is_never_missed(store: SqlStore) -> None:
    for i in range(30):
        now = START + 10 * i
        run_id, token = _running_run(store, now)
        event = Event(new_id(), "go", {"i": i}, None, "app", now)
        parking, _ = together(
            partial(store.park, _event_wait(run_id, token, now), now),
            partial(store.record_event, event, []),
        )
        steps = store.steps(run_id)
        (step,) = steps
        assert step.result["event"]["id"] == event.id
        if parking.state == "parked":  # the event's writer saw the wait: it queued the run
            assert store.get_run(run_id).state == RunState.ENQUEUED
        else:  # the parker's look-back saw the event: the run never parked
            assert parking.state == "resolved" and parking.result == step.result
            assert store.get_run(run_id).state == RunState.RUNNING
        (wait,) = store.waits([run_id])
        assert (wait.status, wait.event_id) == ("resolved", event.id)


def test_a_wait_is_resolved_once_when_events_and_its_deadline_race(store: SqlStore) -> None:
    for i in range(20):
        now = START + 10 * i  # apart: events of one round are out of the next one's window
        run_id, token = _running_run(store, now)
        assert store.park(_event_wait(run_id, token, now, deadline=now + 1), now).state == "parked"
        events = [Event(new_id(), "go", n, None, "app", now + 0.5) for n in range(2)]
        together(
            partial(store.record_event, events[0], []),
            partial(store.record_event, events[1], []),
            partial(store.wake_due_waits, now + 1),
        )
        (wait,) = store.waits([run_id])
        (step,) = store.steps(run_id)
        assert step.attempts == 1
        if wait.status == "timed_out":
            assert step.result == {"event": None, "timed_out": True}
        else:
            assert wait.status == "resolved"
            assert step.result["event"]["id"] == wait.event_id
            assert wait.event_id in {e.id for e in events}
        run = store.get_run(run_id)
        assert run.state == RunState.ENQUEUED


def test_a_decision_resolves_a_wait_once(store: SqlStore) -> None:
    run_id, token = _running_run(store, START)
    approval = NewWait(
        run_id=run_id,
        lease_token=token,
        step_key="approval",
        step_name="approval",
        seq=0,
        kind="approval",
        topics=("approval:1",),
        detail={"prompt": "ok?"},
        since=None,
        deadline=START + HOUR,
        created_at=START,
    )
    assert store.park(approval, START).state == "parked"
    assert store.resolve_wait(run_id, "approval", {"approved": True}, START + 1)
    assert not store.resolve_wait(run_id, "approval", {"approved": False}, START + 2)
    assert store.wake_due_waits(START + HOUR) is None  # nothing left open
    (step,) = store.steps(run_id)
    assert step.result == {"approved": True}
    assert store.get_run(run_id).state == RunState.ENQUEUED


def test_parking_is_fenced_by_the_lease(store: SqlStore) -> None:
    run_id, token = _running_run(store, START)
    assert store.park(_event_wait(run_id, token - 1, START), START).state == "lease_lost"
    assert store.waits([run_id]) == []
    assert store.get_run(run_id).state == RunState.RUNNING
