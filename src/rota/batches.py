"""WriteBatch: the same store write from many concurrent runs, made as one call on a database
thread (one transaction), the way a worker batches its completions. Used for durable step
checkpoints (rota.durable) and rate-limit reservations (agents/models/ratelimited.py): with
hundreds of runs in flight, one transaction and one thread hand-off per write cost more CPU
than the write itself.
"""

from __future__ import annotations

import asyncio
import contextvars
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
