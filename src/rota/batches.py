"""Store calls of many concurrent runs, made with as little work around them as can be.

- `WriteBatch`: the same store write from many concurrent runs, made as one call on a
  database thread (one transaction), the way a worker batches its completions. Used for
  durable step checkpoints and `tool.called` audit records (rota.durable), and rate-limit
  reservations (agents/models/ratelimited.py).
- `DatabaseThreads`: a worker's database threads, and the hand-off of each store call from
  its event loop to them and back.

With hundreds of runs in flight, one transaction and one thread hand-off per write cost
more CPU than the write itself (docs/benchmarks.md, issue 18).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import queue
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

from .errors import RunInterrupted, StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")


class WriteBatch(Generic[T, R]):
    """The same store write of many concurrent runs, as one call on a database thread, the
    way a worker batches its completions. With nothing in flight, a write goes at once, in
    its writer's task, as the lone call `one` (exactly as without batching). Writes that
    arrive while one is in flight wait for it, then go together as one call `many` (one
    transaction). Each writer awaits its own result, so a run still does not continue
    before its write is committed."""

    def __init__(
        self, one: Callable[[T], R], many: Callable[[list[T]], list[R]], *, owner: object = None
    ) -> None:
        self._one, self._many = one, many
        self.owner = owner  # what the batch writes to (its store), for whoever keeps batches
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._busy_on: asyncio.AbstractEventLoop | None = None  # the loop of the write in flight

    async def write(self, db: Callable[..., Awaitable[Any]], item: T) -> R:
        """Write `item`, with the others pending if a write is in flight (`db` runs a call on
        a database thread)."""
        loop = asyncio.get_running_loop()
        if self._busy_on is not loop:  # nothing in flight (on this loop: another one died)
            self._busy_on = loop
            try:
                return cast(R, await db(self._one, item))
            finally:
                self._flush_pending(loop, db)
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        return await future

    def _flush_pending(self, loop: asyncio.AbstractEventLoop, db: Callable[..., Any]) -> None:
        """The write in flight is done: the writes that arrived meanwhile go next, together,
        in a task of their own (a context of its own: it belongs to no one run)."""
        if not self._pending:
            self._busy_on = None
            return
        batch, self._pending = self._pending, []
        loop.create_task(self._flush(loop, db, batch), context=contextvars.Context())

    async def _flush(
        self,
        loop: asyncio.AbstractEventLoop,
        db: Callable[..., Awaitable[Any]],
        batch: list[tuple[T, asyncio.Future[R]]],
    ) -> None:
        try:
            await self._write(db, batch)
        except asyncio.CancelledError:  # the loop is shutting down: nothing was written
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending, self._busy_on = [], None
            raise
        except BaseException as exc:  # not the store's (KeyboardInterrupt...): no writer hangs
            for _, future in batch:
                _settle(future, exc=exc)
            self._flush_pending(loop, db)
            raise
        self._flush_pending(loop, db)

    async def _write(
        self, db: Callable[..., Awaitable[Any]], batch: list[tuple[T, asyncio.Future[R]]]
    ) -> None:
        items = [item for item, _ in batch]
        try:
            results = [await db(self._one, items[0])] if len(items) == 1 else None
            if results is None:
                results = await db(self._many, items)
        except (StoreUnavailable, RunInterrupted) as exc:  # the database: every writer is told
            for _, future in batch:
                _settle(future, exc=exc)
            return
        except Exception as exc:
            if len(items) == 1:
                _settle(batch[0][1], exc=exc)
                return
            for item, future in batch:  # one bad item must not fail the others' writes
                try:
                    _settle(future, await db(self._one, item))
                except Exception as one_exc:  # handed to its own writer
                    _settle(future, exc=one_exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _settle(
    future: asyncio.Future[R], result: Any = None, *, exc: BaseException | None = None
) -> None:
    if future.done():  # its writer was cancelled; the write went ahead regardless
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class DatabaseThreads:
    """A worker's database threads: store calls from its event loop, run in order of arrival
    by whichever thread is free. What `loop.run_in_executor` does, with less around each call:
    one queue in and one asyncio future per call (no executor future chained to it), and the
    results of calls that finish together handed back to the loop with one wake-up.

    A call whose awaiting task was cancelled before a thread took it up is not made (as
    with an executor). The threads finish the calls queued before `shutdown`, also when the
    interpreter exits."""

    def __init__(self, threads: int, *, name: str = "rota-db") -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._returns: dict[asyncio.AbstractEventLoop, _Returns] = {}
        self._threads = [
            threading.Thread(target=_serve, args=(self._calls,), name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        _LIVE.add(self)
        # Dropped without shutdown (its worker never ran to the end): its threads stop.
        self._stop = weakref.finalize(self, _stop, self._calls, threads)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on a database thread; its result, or its exception, once done."""
        loop = asyncio.get_running_loop()
        returns = self._returns.get(loop)
        if returns is None:
            returns = self._returns[loop] = _Returns(loop)
        future: asyncio.Future[Any] = loop.create_future()
        self._calls.put((returns, future, fn, args))
        return await future

    def shutdown(self, wait: bool = True) -> None:
        """The threads stop once the calls queued so far are done (`wait`: wait for that)."""
        _LIVE.discard(self)
        self._stop()  # once: a second shutdown puts no more stops
        if wait:
            for thread in self._threads:
                thread.join()


class _Returns:
    """Results on their way back to one event loop. A database thread posts each; the first
    one posted since the loop last took them asks the loop to take them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self.asked = False

    def post(self, future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        """On a database thread. Appended before `asked` is read, and the loop clears `asked`
        before it takes: a result is never left behind without a wake-up to take it."""
        self.done.append((future, result, exc))
        if not self.asked:
            self.asked = True
            with contextlib.suppress(RuntimeError):  # a closed loop: no one awaits these
                self.loop.call_soon_threadsafe(self.take)

    def take(self) -> None:
        """On the event loop: settle every result posted so far."""
        self.asked = False
        done = self.done
        while done:
            future, result, exc = done.popleft()
            if future.cancelled():  # its awaiter was cancelled; the call went ahead regardless
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)


_Call = tuple[_Returns, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    """A database thread: make the calls handed to it until told to stop (None)."""
    while (item := calls.get()) is not None:
        _make(*item)
        del item  # holds nothing of a call it is done with while it waits for the next


def _make(
    returns: _Returns, future: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    if future.cancelled():  # cancelled before it started: not made, as with an executor
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # handed to its caller, as an executor would
        returns.post(future, None, exc)
        return
    returns.post(future, result, None)


def _stop(calls: queue.SimpleQueue[_Call | None], threads: int) -> None:
    for _ in range(threads):
        calls.put(None)


_LIVE: weakref.WeakSet[DatabaseThreads] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    """At exit, finish the calls already queued (an executor's threads would), then stop."""
    for threads in list(_LIVE):
        threads.shutdown(wait=True)
