"""Shared rate limits: GCRA state in the store, the same for every worker."""

from __future__ import annotations

import asyncio
import threading

from rota import FakeClock
from rota.agents.models.ratelimited import RateLimit, RateLimitedModel, request_tokens
from rota.agents.types import Message, ModelRequest, ModelResponse, Usage
from rota.storage import SqlStore
from rota.storage.limits import Charge

T0 = 1_000_000.0


def test_calls_reserve_their_turn_in_one_step(store: SqlStore) -> None:
    per_second = {"api:requests": Charge(interval_s=1.0, cost=1, burst_s=2.0)}
    waits = [store.take(per_second, T0) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 2.0]  # a burst of 2 s worth plus one, then 1 a second
    assert store.take(per_second, T0 + 10) == 0.0  # the debt has drained


def test_all_resources_are_reserved_together(store: SqlStore) -> None:
    charges = {
        "m:requests": Charge(0.02, 1, 1.0),
        "m:tokens": Charge(0.001, 5000, 1.0),  # one call costs 5 s of token allowance
    }
    assert store.take(charges, T0) == 0.0  # one large call is never held back when idle
    assert store.take(charges, T0) == 4.0  # the next starts when the token debt is 1 s
    tats = {r["key"]: r["tat"] for r in store.conn().execute("SELECT * FROM rota_rate_limits")}
    assert tats == {"m:requests": T0 + 4.02, "m:tokens": T0 + 10.0}


def test_many_workers_share_one_limit(store: SqlStore) -> None:
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        own = SqlStore(store.url)  # a separate connection, as another worker process has
        for _ in range(25):
            wait = own.take({"shared:requests": Charge(0.1, 1, 0.0)}, T0)
            with lock:
                waits.append(round(wait, 6))
        own.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 calls at 10 a second, no burst: each got its own turn, 0.1 s apart
    assert sorted(waits) == [round(i * 0.1, 6) for i in range(100)]


class _Echo:
    provider, name = "fake", "echo"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return ModelResponse(
            "ok", (), "end_turn", Usage(input_tokens=100, output_tokens=20), "echo", "fake"
        )


def test_wrapper_waits_on_the_fake_clock_and_corrects_the_token_charge(store: SqlStore) -> None:
    clock = FakeClock(T0)
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    model = _Echo()
    limited = RateLimitedModel(
        model,
        RateLimit(requests_per_minute=60, tokens_per_minute=60_000, burst_s=1.0),
        store,
        clock=clock,
        sleep=fake_sleep,
    )
    request = ModelRequest("echo", "be brief", (Message("user", "hi"),), max_tokens=200)
    assert request_tokens(request) >= 200

    async def three() -> None:
        for _ in range(3):
            await limited.complete(request)

    asyncio.run(three())
    assert model.calls == 3
    assert waits == [1.0]  # 60 rpm with a 1 s burst: the third call waits one second
    tat = store.conn().execute("SELECT tat FROM rota_rate_limits WHERE key = 'fake:echo:tokens'")
    # 120 real tokens a call at 1,000 tokens/s: charged as used, not as estimated; the third
    # call started at T0 + 1 (after the request wait)
    assert abs(float(tat[0]["tat"]) - (T0 + 1.12)) < 1e-6


def test_an_agent_job_charges_the_shared_limit_in_the_store(app) -> None:
    from rota import Agent
    from rota.testing import ScriptedModel, say

    model = ScriptedModel("limited", script=[say("done")])
    agent = Agent("limited-agent", model, "Answer.", rate_limit=RateLimit(6000, 600_000))
    app.agent(agent)
    handle = app.run_now("limited-agent", "go")
    app.drain()
    assert handle.get().state.value == "SUCCEEDED"
    keys = {r["key"] for r in app.store.conn().execute("SELECT key FROM rota_rate_limits")}
    assert keys == {"scripted:limited:requests", "scripted:limited:tokens"}
