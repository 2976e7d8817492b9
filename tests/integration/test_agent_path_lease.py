"""Leased turns on a shared requests-only rate limit (issue 18): a busy worker reserves
several turns in one transaction, and every worker together still keeps to the limit and
its burst, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rota import FakeClock
from rota.agents.models.ratelimited import RateLimit, RateLimitedModel
from rota.agents.types import Message, ModelRequest, ModelResponse, Usage
from rota.storage import SqlStore

T0 = 1_000_000.0
RPM = 6000.0  # a turn every 10 ms
BURST_S = 0.5
REQUEST = ModelRequest("echo", "be brief", (Message("user", "hi"),), max_tokens=10)


class _Sent:
    """The provider: notes when each request went out, on the fake clock."""

    provider, name = "fake", "echo"

    def __init__(self, clock: FakeClock, sent: list[float]) -> None:
        self.clock, self.sent = clock, sent

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.sent.append(self.clock.now())
        return ModelResponse("ok", (), "end_turn", Usage(input_tokens=1), "echo", "fake")


class _Counted:
    """A worker's store: counts its reservations (transactions) and the turns in them."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.leases: list[int] = []

    def take_many(self, takes: Any) -> list[float]:
        self.leases.append(len(takes))
        return self.store.take_many(takes)

    def take(self, charges: Any, now: float) -> float:
        self.leases.append(1)
        return self.store.take(charges, now)


def _worker(store: _Counted, clock: FakeClock, sent: list[float]) -> RateLimitedModel:
    async def sleep(seconds: float) -> None:  # one call at a time: the clock moves to its turn
        clock.advance(seconds)

    async def call(fn: Any, *args: Any) -> Any:
        return fn(*args)  # the store call in this loop: the order stays deterministic

    limit = RateLimit(requests_per_minute=RPM, burst_s=BURST_S)
    return RateLimitedModel(_Sent(clock, sent), limit, store, call=call, clock=clock, sleep=sleep)


def _never_over_the_limit(sent: list[float]) -> None:
    """However the turns were reserved, no k+1 requests went out closer together than the
    limit with its burst allows: k intervals less the burst."""
    interval = 60.0 / RPM
    times = sorted(sent)
    for i in range(len(times)):
        for k in range(1, len(times) - i):
            assert times[i + k] - times[i] >= k * interval - BURST_S - 1e-9, (i, k)


def test_busy_workers_lease_turns_and_keep_to_the_shared_limit(store: SqlStore) -> None:
    clock = FakeClock(T0)
    sent: list[float] = []
    workers = [_Counted(store), _Counted(SqlStore(store.url))]  # two workers, one limit
    models = [_worker(w, clock, sent) for w in workers]
    rng = random.Random(18)

    async def demand() -> None:
        for _ in range(400):
            await models[rng.randrange(2)].complete(REQUEST)
            clock.advance(
                rng.choice(
                    [0.0, 0.0, 0.001, 0.004, 0.03, 0.3]
                    if rng.random() < 0.1
                    else [0.0, 0.002, 0.005]
                )
            )

    asyncio.run(demand())
    workers[1].store.close()
    assert len(sent) == 400
    _never_over_the_limit(sent)
    leases = [n for w in workers for n in w.leases]
    assert sum(leases) >= 400  # every request had a reserved turn
    assert len(leases) < 400 / 2  # and busy workers reserved them several at a time


def test_a_quiet_worker_reserves_one_turn_at_a_time(store: SqlStore) -> None:
    clock = FakeClock(T0)
    sent: list[float] = []
    worker = _Counted(store)
    model = _worker(worker, clock, sent)

    async def quiet() -> None:
        for _ in range(5):
            await model.complete(REQUEST)
            clock.advance(1.0)

    asyncio.run(quiet())
    assert worker.leases == [1] * 5  # nothing reserved that it did not use
    assert sent == [T0 + i for i in range(5)]


def test_a_leased_turn_unused_in_its_window_expires(store: SqlStore) -> None:
    clock = FakeClock(T0)
    sent: list[float] = []
    worker = _Counted(store)
    model = _worker(worker, clock, sent)

    async def burst_then_pause() -> None:
        for _ in range(30):  # busy: the lease grows to the window's worth of turns
            await model.complete(REQUEST)
        clock.advance(5.0)
        await model.complete(REQUEST)

    asyncio.run(burst_then_pause())
    assert max(worker.leases) > 1
    # After the pause, the turns left over were too old: a fresh one was reserved.
    assert worker.leases[-1] == 1
    assert sent[-1] == T0 + 5.0
    _never_over_the_limit(sent)


def test_turns_used_late_never_add_to_a_burst(store: SqlStore) -> None:
    clock = FakeClock(T0)
    sent: list[float] = []
    model = _worker(_Counted(store), clock, sent)

    async def lease_pause_burst() -> None:
        for _ in range(5):  # at once: leases of 1, 2 and 4 turns, 2 of them left over
            await model.complete(REQUEST)
        clock.advance(0.08)  # those 2 are old, but still inside their 0.1 s window
        for _ in range(100):  # then everyone at once
            await model.complete(REQUEST)

    asyncio.run(lease_pause_burst())
    _never_over_the_limit(sent)


def test_calls_at_once_wait_in_line_for_one_lease(store: SqlStore) -> None:
    clock = FakeClock(T0)
    sent: list[float] = []
    slept: list[float] = []
    worker = _Counted(store)
    limit = RateLimit(requests_per_minute=RPM, burst_s=BURST_S)

    async def slow_call(fn: Any, *args: Any) -> Any:
        await asyncio.sleep(0)  # a database thread's round trip: the other calls line up
        return fn(*args)

    async def sleep(seconds: float) -> None:  # all at the same moment: the clock stays
        slept.append(round(seconds, 6))

    model = RateLimitedModel(
        _Sent(clock, sent), limit, worker, call=slow_call, clock=clock, sleep=sleep
    )

    async def at_once() -> None:
        await asyncio.gather(*(model.complete(REQUEST) for _ in range(300)))

    asyncio.run(at_once())
    assert len(sent) == 300
    # The first call leased alone; every call that lined up meanwhile shared the next lease.
    assert worker.leases == [1, 300]
    # Each call had a turn of its own: 41 at once (the burst less the lease window), then
    # one every 10 ms, as 300 takes one by one would have given (a float's 1e-16 aside).
    assert [w for w in sorted(slept) if w > 0] == [round(0.01 * k, 6) for k in range(1, 260)]
