"""Worker behaviour on both databases: steps, retries, timeouts, limits, cancel, shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rota import App, RunFailed, RunState, SerializationError, current_step, on_event
from rota.errors import RotaError


def test_sync_and_async_jobs_receive_payload_and_store_results(app: App) -> None:
    @app.job
    def add(ctx, payload):
        return payload["a"] + payload["b"]

    @app.job
    async def who(ctx):
        return {"run": ctx.run_id, "attempt": ctx.attempt, "payload": ctx.payload}

    a = app.run_now("add", {"a": 2, "b": 3})
    w = app.run_now("who", [1, 2])
    stats = app.drain()
    assert stats.succeeded == 2
    assert a.result() == 5
    assert w.result() == {"run": w.id, "attempt": 1, "payload": [1, 2]}
    run = a.get()
    assert run.trigger == "manual" and run.started_at and run.finished_at


def test_completed_steps_are_not_executed_again_on_retry(app: App) -> None:
    executions: list[str] = []

    def record(name: str) -> str:
        executions.append(name)
        return f"{name}:{current_step().idempotency_key}"

    @app.workflow(retries=2, retry_backoff=0)
    async def flow(ctx, payload):
        one = await ctx.step("one", record, "one")
        if ctx.attempt == 1:
            raise RuntimeError("crash between steps")
        two = await ctx.step("two", record, "two")
        return [one, two]

    handle = app.run_now("flow", {})
    app.drain()
    assert handle.result() == [f"one:{handle.id}:one", f"two:{handle.id}:two"]
    assert executions == ["one", "two"]
    run = handle.get()
    assert (run.attempt, run.failures) == (2, 1)
    steps = app.store.steps(handle.id)
    assert [(s.key, s.state, s.attempts) for s in steps] == [
        ("one", "SUCCEEDED", 1),
        ("two", "SUCCEEDED", 1),
    ]


def test_repeated_step_names_get_distinct_keys(app: App) -> None:
    @app.workflow
    async def loop(ctx):
        return [await ctx.step("item", lambda i=i: i * 10) for i in range(3)]

    handle = app.run_now("loop")
    app.drain()
    assert handle.result() == [0, 10, 20]
    assert [s.key for s in app.store.steps(handle.id)] == ["item", "item#2", "item#3"]


def test_step_retries_then_fails_with_a_recorded_error(app: App) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return 7

    def broken() -> None:
        raise ValueError("bad row 12")

    @app.workflow
    async def flow(ctx):
        value = await ctx.step("flaky", flaky, retries=2, backoff=0)
        await ctx.step("broken", broken, retries=1, backoff=0)
        return value

    handle = app.run_now("flow")
    app.drain()
    with pytest.raises(RunFailed, match="step 'broken' failed: ValueError: bad row 12"):
        handle.result()
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert (steps["flaky"].state, steps["flaky"].attempts, steps["flaky"].result) == (
        "SUCCEEDED",
        3,
        7,
    )
    assert (steps["broken"].state, steps["broken"].attempts) == ("FAILED", 2)
    assert steps["broken"].error["type"] == "ValueError"


def test_non_serialisable_step_result_fails_clearly_without_retry(app: App) -> None:
    @app.workflow(retries=3, retry_backoff=0)
    async def flow(ctx):
        return await ctx.step("load", lambda: {"when": {1, 2}})

    handle = app.run_now("flow")
    app.drain()
    run = handle.get()
    assert run.state == RunState.FAILED and run.attempt == 1  # not retried: it cannot succeed
    assert run.error["type"] == "SerializationError"
    assert "the result of step 'load' is not JSON-serialisable" in run.error["message"]
    (step,) = app.store.steps(handle.id)
    assert step.state == "FAILED"


def test_non_serialisable_payload_is_refused_before_anything_is_stored(app: App) -> None:
    @app.job
    def noop(ctx, payload):
        return None

    with pytest.raises(SerializationError, match="payload for 'noop' is not JSON"):
        app.run_now("noop", {"at": object()})
    assert app.store.count_states() == {}


def test_run_timeout_counts_as_a_failure_and_is_retried(app: App) -> None:
    @app.job(timeout="50ms", retries=1, retry_backoff=0)
    async def slow(ctx):
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return "second try"

    handle = app.run_now("slow")
    app.drain()
    assert handle.result() == "second try"
    assert handle.get().failures == 1


def test_step_timeout(app: App) -> None:
    @app.workflow
    async def flow(ctx):
        return await ctx.step("wait", asyncio.sleep, 30, timeout="50ms")

    handle = app.run_now("flow")
    app.drain()
    with pytest.raises(RunFailed, match="StepTimeout"):
        handle.result()


def test_job_concurrency_limit_holds_across_the_worker(app: App) -> None:
    state = {"now": 0, "max": 0}

    @app.job(concurrency=2)
    async def limited(ctx, payload):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1

    app.run_many("limited", [{}] * 12)
    stats = app.drain(concurrency=8, poll_interval_s=0.05)
    assert stats.succeeded == 12
    assert state["max"] == 2


def test_per_key_concurrency(app: App) -> None:
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    @app.job(concurrency=1, concurrency_key="customer")
    async def per_customer(ctx, payload):
        key = payload["customer"]
        running[key] = running.get(key, 0) + 1
        peak[key] = max(peak.get(key, 0), running[key])
        await asyncio.sleep(0.01)
        running[key] -= 1

    app.run_many("per_customer", [{"customer": c} for c in "abcabcabc"])
    assert app.drain(concurrency=8, poll_interval_s=0.05).succeeded == 9
    assert peak == {"a": 1, "b": 1, "c": 1}
    with pytest.raises(RotaError, match="has no such field"):
        app.run_now("per_customer", {"who": "x"})


def test_priorities_order_claims(app: App) -> None:
    order: list[int] = []

    @app.job
    def note(ctx, payload):
        order.append(payload)

    for p in (0, 5, 1, 9):
        app.run_now("note", p, priority=p)
    app.drain(concurrency=1)
    assert order == [9, 5, 1, 0]


def test_duplicate_enqueue_returns_the_existing_run(app: App) -> None:
    @app.job
    def once(ctx, payload):
        return payload

    first = app.run_now("once", 1, idempotency_key="invoice-7")
    second = app.run_now("once", 2, idempotency_key="invoice-7")
    assert (second.id, second.created, first.created) == (first.id, False, True)
    assert app.drain().succeeded == 1
    assert second.result() == 1


def test_emit_runs_each_matching_trigger_once(app: App) -> None:
    seen: list[tuple[str, Any]] = []

    @app.job(trigger=on_event("invoice", filter={"status": "paid"}))
    def paid(ctx, event):
        seen.append(("paid", event["id"]))

    @app.job(trigger=on_event("invoice"))
    def every_invoice(ctx, event):
        seen.append(("any", event["id"]))

    first = app.emit("invoice", {"id": 1, "status": "paid"}, idempotency_key="in_1")
    dup = app.emit("invoice", {"id": 1, "status": "paid"}, idempotency_key="in_1")
    other = app.emit("invoice", {"id": 2, "status": "open"})
    assert (len(first.runs), dup.created, len(dup.runs), len(other.runs)) == (2, False, 0, 1)
    app.drain()
    assert sorted(seen) == [("any", 1), ("any", 2), ("paid", 1)]
    assert {r.get().trigger_ref for r in first.runs} == {first.event_id}


def test_cancel_a_running_run(app: App) -> None:
    started = threading.Event()

    @app.job
    async def forever(ctx):
        started.set()
        await asyncio.sleep(60)

    handle = app.run_now("forever")

    async def scenario() -> None:
        worker = app.worker(lease_s=0.3, poll_interval_s=0.05)
        task = asyncio.create_task(worker.run(until_idle=True))
        await asyncio.to_thread(started.wait, 10)
        app.store.cancel(handle.id, app.clock.now())
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    run = handle.get()
    assert run.state == RunState.CANCELLED and run.error["type"] == "Cancelled"


def test_graceful_shutdown_releases_unfinished_runs_which_resume_elsewhere(app: App) -> None:
    executions: list[str] = []
    gate = threading.Event()

    @app.workflow
    async def two_steps(ctx):
        await ctx.step("first", executions.append, "first")
        if not gate.is_set():
            await asyncio.sleep(60)  # still busy when the worker is told to stop
        await ctx.step("second", executions.append, "second")
        return "done"

    handle = app.run_now("two_steps")

    async def first_worker() -> Any:
        worker = app.worker(shutdown_grace_s=0.1, poll_interval_s=0.05)
        task = asyncio.create_task(worker.run())
        while not executions:
            await asyncio.sleep(0.01)
        worker.stop()
        return await asyncio.wait_for(task, 20)

    stats = asyncio.run(first_worker())
    assert stats.released == 1
    assert handle.get().state == RunState.ENQUEUED
    gate.set()
    app.drain()
    assert handle.result() == "done"
    assert executions == ["first", "second"]  # "first" was checkpointed, not repeated


def test_a_worker_that_lost_its_lease_cannot_record_a_result(app: App) -> None:
    release = threading.Event()

    @app.job
    def slow(ctx):
        release.wait(10)
        return "late"

    handle = app.run_now("slow")

    async def scenario() -> None:
        worker = app.worker(lease_s=60, poll_interval_s=0.05)
        task = asyncio.create_task(worker.run(until_idle=True))
        while handle.get().state != RunState.RUNNING:
            await asyncio.sleep(0.01)
        # Another process decides this worker is dead and hands the run to someone else.
        store = app.store
        later = app.clock.now() + 120
        store.reap_expired(later, max_reclaims=5)
        assert len(store.claim("thief", ["slow"], 1, later, 600)) == 1
        release.set()
        worker.stop()
        await asyncio.wait_for(task, 20)

    asyncio.run(scenario())
    run = handle.get()
    assert (run.state, run.lease_owner, run.result) == (RunState.RUNNING, "thief", None)


def test_shutdown_hands_back_prefetched_runs_that_never_started(app: App) -> None:
    started = threading.Event()

    @app.job
    async def busy(ctx, payload):
        started.set()
        await asyncio.sleep(60)

    app.run_many("busy", [{}] * 3)

    async def scenario() -> Any:
        # One slot and a prefetch of two: one run executes, two wait in the buffer.
        worker = app.worker(concurrency=1, prefetch=2, shutdown_grace_s=0.05)
        task = asyncio.create_task(worker.run())
        await asyncio.to_thread(started.wait, 10)
        worker.stop()
        return await asyncio.wait_for(task, 20)

    stats = asyncio.run(scenario())
    assert (stats.claimed, stats.released) == (3, 3)
    runs = app.runs(names=["busy"])
    assert {(r.state, r.lease_owner) for r in runs} == {(RunState.ENQUEUED, None)}
