"""DatabaseThreads (issue 18): a worker's store calls handed to its database threads and
back, as `loop.run_in_executor` did, with one wake-up for the results that finish together."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rota.batches import DatabaseThreads


def test_each_call_gets_its_own_result_or_exception() -> None:
    threads = DatabaseThreads(2, name="test-db")

    def fail(n: int, _: int) -> int:
        raise ValueError(f"bad {n}")

    async def calls() -> list[object]:
        return await asyncio.gather(
            *(threads.call(fail if n % 7 == 0 else pow, n, 2) for n in range(200)),
            return_exceptions=True,
        )

    try:
        got = asyncio.run(calls())
    finally:
        threads.shutdown()
    for n, result in enumerate(got):
        if n % 7 == 0:
            assert isinstance(result, ValueError)
        else:
            assert result == n * n


def test_calls_run_on_the_named_threads_not_the_loop() -> None:
    threads = DatabaseThreads(1, name="test-db")

    async def where() -> str:
        return str(await threads.call(lambda: threading.current_thread().name))

    try:
        assert asyncio.run(where()) == "test-db_0"
    finally:
        threads.shutdown()


def test_a_call_cancelled_before_it_started_is_not_made() -> None:
    threads = DatabaseThreads(1, name="test-db")
    release = threading.Event()
    made: list[str] = []

    async def scenario() -> None:
        busy = asyncio.ensure_future(threads.call(release.wait))  # holds the only thread
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(threads.call(made.append, "queued"))
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await busy
        assert await threads.call(made.append, "after") is None  # in order: queued is past
        with pytest.raises(asyncio.CancelledError):
            await queued

    try:
        asyncio.run(scenario())
    finally:
        threads.shutdown()
    assert made == ["after"]


def test_shutdown_finishes_the_calls_already_queued() -> None:
    threads = DatabaseThreads(1, name="test-db")
    done: list[int] = []

    async def queue_then_shut_down() -> None:
        calls = [asyncio.ensure_future(threads.call(done.append, n)) for n in range(5)]
        await asyncio.sleep(0)  # each task hands its call over
        threads.shutdown(wait=False)
        await asyncio.gather(*calls)

    asyncio.run(queue_then_shut_down())
    threads.shutdown(wait=True)  # a second shutdown is harmless
    assert done == [0, 1, 2, 3, 4]
