"""The queue's hot path (issue 18): runs due soon are leased ahead beyond the worker's slots,
a worker's run.started records commit in the same transaction as its completions, and a
batch of unkeyed runs is bulk-loaded (COPY on PostgreSQL) without changing what is stored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rota import App
from rota.errors import StoreUnavailable
from rota.identity.audit import verify_chain
from rota.model import Completion, NewRun, RunState
from rota.storage.audit import RUN_STARTED, AuditEntry
from rota.storage.sql import SqlStore


def _record_claims(app: App) -> list[int]:
    """Sizes of the worker's claims, in order (the store's claim, wrapped)."""
    sizes: list[int] = []
    claim = app.store.claim

    def recording(*args: Any, **kwargs: Any) -> Any:
        runs = claim(*args, **kwargs)
        sizes.append(len(runs))
        return runs

    app.store.claim = recording  # type: ignore[method-assign]
    return sizes


def _started_at_or_after_due(seen: dict[str, tuple[float, float]]) -> None:
    for run_after, began in seen.values():
        assert began >= run_after - 0.005  # started at its time, never before (clock grain)


def _burst(app: App, **options: Any) -> tuple[list[int], dict[str, tuple[float, float]]]:
    seen: dict[str, tuple[float, float]] = {}

    @app.job
    async def tick(ctx: Any) -> None:
        seen[ctx.run.id] = (ctx.run.run_after, time.time())

    sizes = _record_claims(app)
    app.run_many("tick", [None] * 20, delay=0.4)
    worker = app.worker(concurrency=1, prefetch=0, lookahead_s=1.0, **options)
    stats = asyncio.run(worker.run(until_idle=True))
    assert stats.succeeded == 20
    return [s for s in sizes if s], seen


def test_a_burst_due_soon_is_leased_ahead_beyond_the_slots(app: App) -> None:
    # One slot and no prefetch: before, the worker leased one run at a time as its slot
    # freed, so the end of a burst waited behind its own claims.
    sizes, seen = _burst(app)
    assert sizes[:2] == [1, 19]  # the slot's claim, then the rest of the burst ahead
    _started_at_or_after_due(seen)


def test_lookahead_max_bounds_the_runs_leased_ahead(app: App) -> None:
    sizes, seen = _burst(app, lookahead_max=5)
    assert max(sizes) <= 6  # one slot + five ahead
    assert sum(sizes) == 20
    _started_at_or_after_due(seen)


def test_lookahead_max_zero_leases_no_more_than_the_slots(app: App) -> None:
    sizes, seen = _burst(app, lookahead_max=0)
    assert max(sizes) == 1
    _started_at_or_after_due(seen)


def test_run_started_records_commit_with_the_completions(app: App) -> None:
    @app.job
    async def noop(ctx: Any) -> None:
        return None

    app.run_many("noop", [None] * 30)
    appends = []
    append = app.store.append_audit
    failed = []

    def flaky(conn: Any, entries: Any) -> Any:
        # The first flush's transaction fails where the chain is appended: its outcomes
        # must roll back with it and be written again, with the same run starts.
        if not failed:
            failed.append(len(entries))
            raise StoreUnavailable("the database went away")
        appends.append(len(entries))
        return append(conn, entries)

    app.store.append_audit = flaky  # type: ignore[method-assign]
    stats = asyncio.run(app.worker(poll_interval_s=0.05).run(until_idle=True))
    assert stats.succeeded == 30 and failed and failed[0] > 0
    records = app.store.audit_records(action=RUN_STARTED, limit=1000)
    assert sorted(r.run_id for r in records) == sorted(r.id for r in app.runs(names=["noop"]))
    assert {r.state for r in app.runs(names=["noop"])} == {RunState.SUCCEEDED}
    assert verify_chain(app.store).ok


def test_a_failed_append_rolls_back_the_completions(store: SqlStore) -> None:
    from_now = time.time()
    run = _enqueued(store, from_now)
    (claimed,) = store.claim("w", ["noop"], 1, from_now, 30.0)
    done = Completion(
        run_id=run,
        lease_token=claimed.lease_token,
        state=RunState.SUCCEEDED,
        finished_at=from_now,
        result="null",
        failures=0,
    )
    start = AuditEntry(actor="anonymous", action=RUN_STARTED, subject="noop", run_id=run)

    def broken(conn: Any, entries: Any) -> Any:
        raise StoreUnavailable("the database went away")

    append = store.append_audit
    store.append_audit = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        store.complete([done], audit=[start])
    assert store.get_run(run).state == RunState.RUNNING
    assert store.audit_records(action=RUN_STARTED) == []
    store.append_audit = append  # type: ignore[method-assign]
    assert store.complete([done], audit=[start]) == 1
    assert store.get_run(run).state == RunState.SUCCEEDED
    assert [r.run_id for r in store.audit_records(action=RUN_STARTED)] == [run]
    assert verify_chain(store).ok


def _enqueued(store: SqlStore, now: float) -> str:
    run = NewRun("run-1", "noop", "job", "null", "manual", created_at=now, run_after=now)
    store.enqueue([run])
    return run.id


AWKWARD = [
    {"text": "tab\there, newline\nthere, a backslash \\ and \\N"},
    {"text": "quotes \" ' and unicode é 漢字 🎉", "n": 1.5e-300, "big": 2**62},
    {"text": ""},
    None,
    [1, "two", {"three": None}],
    "\\.",
]


def test_a_bulk_enqueue_stores_every_payload_exactly(app: App) -> None:
    @app.job
    async def keep(ctx: Any, payload: Any) -> Any:
        return payload

    payloads = AWKWARD * 200
    handles = app.run_many("keep", payloads, priority=3, delay=0)
    assert len({h.id for h in handles}) == len(payloads)
    stored = {r.id: r for r in app.runs(names=["keep"], limit=10_000)}
    for handle, payload in zip(handles, payloads, strict=True):
        run = stored[handle.id]
        assert (run.payload, run.state, run.priority) == (payload, RunState.ENQUEUED, 3)
    stats = asyncio.run(app.worker().run(until_idle=True))
    assert stats.succeeded == len(payloads)


def test_keyed_runs_in_a_batch_still_dedupe(app: App) -> None:
    @app.job
    async def keep(ctx: Any, payload: Any) -> Any:
        return payload

    first = app.run_many("keep", [1, 2, 3], idempotency_keys=["a", None, "c"])
    again = app.run_many("keep", [4, 5], idempotency_keys=["a", None])
    assert again[0].id == first[0].id
    assert [h.created for h in again] == [False, True]
    assert sorted(r.payload for r in app.runs(names=["keep"])) == [1, 2, 3, 5]


@pytest.mark.parametrize(
    ("claim_s", "run_s", "prefetch"),
    [
        (None, None, 8),  # nothing measured yet: one slot's worth each
        (0.010, 5.0, 8),  # long runs (agents): never more than the slots
        (0.010, 0.001, 80),  # the slots finish 80 runs during one claim
        (0.010, 0.00001, 200),  # at most claim_batch
    ],
)
def test_prefetch_grows_only_while_runs_are_shorter_than_a_claim(
    app: App, claim_s: float | None, run_s: float | None, prefetch: int
) -> None:
    worker = app.worker(concurrency=8)
    worker._claim_s, worker._run_s = claim_s, run_s
    assert worker._prefetch() == prefetch
    assert worker._capacity() == 8 + prefetch


def test_an_explicit_prefetch_is_kept(app: App) -> None:
    worker = app.worker(concurrency=8, prefetch=3)
    worker._claim_s, worker._run_s = 0.010, 0.00001
    assert worker._prefetch() == 3
