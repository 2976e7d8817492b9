"""Batched writes of concurrent runs (issue 18): several runs' step checkpoints in one
transaction (`save_steps`), several calls' rate-limit reservations in one (`take_many`), and
the WriteBatch that gathers them. Each must give every writer exactly what its own write
would have given it alone, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from store_records import T0, new_run, step

from rota import App
from rota.batches import WriteBatch
from rota.errors import StoreUnavailable
from rota.storage import SqlStore
from rota.storage.limits import Charge


def _run(store: SqlStore) -> Any:
    store.enqueue([new_run()])
    (run,) = store.claim("w1", ["job"], 1, T0, 30.0)
    return run


def test_save_steps_saves_each_as_save_step_would(store: SqlStore) -> None:
    a, b = _run(store), _run(store)
    store.save_step(step(a, "done", result='{"v":1}'))
    saved = store.save_steps(
        [
            (step(b, "s"), ()),
            (step(a, "s"), ()),
            (step(a, "done", result='{"v":2}'), ()),  # succeeded already: never overwritten
            (step(b, "fenced", token=b.lease_token + 1), ()),  # not the lease holder
        ]
    )
    assert saved == [True, True, False, False]
    assert {s.key: s.result for s in store.steps(a.id)} == {"done": {"v": 1}, "s": 1}
    assert [s.key for s in store.steps(b.id)] == ["s"]


def test_take_many_reserves_as_takes_one_by_one_would(store: SqlStore, tmp_path: Any) -> None:
    per_second = {"p:requests": Charge(1.0, 1, 0.0)}
    takes = [(per_second, T0), (per_second, T0), (per_second, T0 + 0.5)]
    assert store.take_many(takes) == [0.0, 1.0, 1.5]
    assert store.take(per_second, T0 + 1) == 2.0  # the batch's reservations stand

    # The same takes one by one on a store of their own give the same waits.
    other = SqlStore(f"sqlite:///{tmp_path / 'one_by_one.db'}")
    other.migrate()
    assert [other.take(c, now) for c, now in takes] == [0.0, 1.0, 1.5]
    other.close()


# -- WriteBatch ----------------------------------------------------------------------------


class Recorder:
    """A fake store call: records each call's items, answers each item with itself x 10."""

    def __init__(self, fail: Callable[[list[int]], BaseException | None] = lambda _: None):
        self.calls: list[list[int]] = []
        self.fail = fail

    def one(self, item: int) -> int:
        return self.many([item])[0]

    def many(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        problem = self.fail(items)
        if problem is not None:
            raise problem
        return [i * 10 for i in items]


async def _to_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def test_concurrent_writes_go_in_one_call_and_each_gets_its_own_result() -> None:
    rec = Recorder()
    batch = WriteBatch(rec.one, rec.many)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(batch.write(_to_thread, i) for i in range(5))))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    # The first goes at once, alone; the four that came while it was written go together.
    assert rec.calls == [[0], [1, 2, 3, 4]]


def test_a_lone_write_is_made_in_its_writers_task() -> None:
    """Sequential writes (one workflow) pay nothing for batching: no task, no waiting."""
    rec = Recorder()
    batch = WriteBatch(rec.one, rec.many)
    tasks: list[Any] = []

    async def db(fn: Callable[..., Any], *args: Any) -> Any:
        tasks.append(asyncio.current_task())
        return fn(*args)

    async def main() -> list[int]:
        return [await batch.write(db, i) for i in range(3)]

    assert asyncio.run(main()) == [0, 10, 20]
    assert rec.calls == [[0], [1], [2]]
    assert len(set(tasks)) == 1  # the writer's own task made every call


def test_writes_arriving_during_a_flush_go_in_the_next_one() -> None:
    rec = Recorder()
    batch = WriteBatch(rec.one, rec.many)

    async def main() -> list[int]:
        first = asyncio.ensure_future(batch.write(_to_thread, 1))
        await asyncio.sleep(0)  # the flush of [1] has begun
        rest = [asyncio.ensure_future(batch.write(_to_thread, i)) for i in (2, 3)]
        return [await first, *[await r for r in rest]]

    assert asyncio.run(main()) == [10, 20, 30]
    assert rec.calls == [[1], [2, 3]]


def test_one_bad_item_fails_only_its_own_writer() -> None:
    rec = Recorder(fail=lambda items: ValueError("bad 2") if 2 in items else None)
    batch = WriteBatch(rec.one, rec.many)

    async def main() -> list[Any]:
        writes = (batch.write(_to_thread, i) for i in (1, 2, 3))
        return list(await asyncio.gather(*writes, return_exceptions=True))

    one, two, three = asyncio.run(main())
    assert (one, three) == (10, 30)
    assert isinstance(two, ValueError) and str(two) == "bad 2"
    # 1 alone, then the batch of 2 and 3 fails and each is written on its own.
    assert rec.calls == [[1], [2, 3], [2], [3]]


def test_the_database_failing_is_told_to_every_writer() -> None:
    rec = Recorder(fail=lambda items: StoreUnavailable("connection lost"))
    batch = WriteBatch(rec.one, rec.many)

    async def main(writes: Any) -> list[Any]:
        return list(await asyncio.gather(*writes, return_exceptions=True))

    writes = (batch.write(_to_thread, i) for i in (1, 2, 3))
    assert [type(r) for r in asyncio.run(main(writes))] == [StoreUnavailable] * 3
    assert rec.calls == [[1], [2, 3]]  # not retried one by one: the store is down for all


def test_concurrent_workflows_lose_no_checkpoint(app: App) -> None:
    """Many workflows' steps written in shared transactions: every step of every run is
    stored once, with its own result, and a resumed run would find them all."""

    async def value(i: int, s: int) -> dict[str, int]:
        return {"run": i, "step": s}

    @app.workflow
    async def stepped(ctx: Any, i: int) -> int:
        for s in range(5):
            got = await ctx.step("s", value, i, s)
            assert got == {"run": i, "step": s}
        return i

    app.store.migrate()
    sizes: list[int] = []
    save_steps = app.store.save_steps

    def counted(items: Any) -> list[bool]:
        sizes.append(len(items))
        return save_steps(items)

    app.store.save_steps = counted  # type: ignore[method-assign]
    handles = app.run_many("stepped", list(range(20)))
    stats = app.drain(concurrency=20)
    assert stats.succeeded == 20
    assert sizes and max(sizes) > 1  # some checkpoints did share a transaction
    for i, handle in enumerate(handles):
        steps = app.store.steps(handle.id)
        assert [s.result for s in steps] == [{"run": i, "step": s} for s in range(5)]
