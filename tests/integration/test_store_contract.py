"""The storage contract: every store behaves the same on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from store_records import T0, new_run, step

from rota import serialization
from rota.errors import InvalidStateError, RunNotFound, SchemaVersionError
from rota.ids import new_id
from rota.model import Completion, Event, RunFilter, RunState
from rota.storage import SqlStore
from rota.storage import schema as schema_mod


def claim(store: SqlStore, owner: str = "w1", limit: int = 10, now: float = T0, **kw):
    return store.claim(owner, kw.pop("names", ["job"]), limit, now, 30.0, **kw)


def test_migrate_is_idempotent(store: SqlStore) -> None:
    assert store.migrate() == (schema_mod.LATEST_VERSION, schema_mod.LATEST_VERSION)
    assert store.schema_version() == schema_mod.LATEST_VERSION


def test_newer_schema_is_refused_and_left_alone(store: SqlStore) -> None:
    store.enqueue([new_run()])
    store.conn().execute("UPDATE rota_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="newer than this rota"):
        store.migrate()
    with pytest.raises(SchemaVersionError, match="upgrade rota"):
        store.check_schema()
    assert store.schema_version() == 999
    assert store.count_states() == {"ENQUEUED": 1}


def test_enqueue_deduplicates_on_idempotency_key(store: SqlStore) -> None:
    first = store.enqueue([new_run(idempotency_key="k")])
    second = store.enqueue([new_run(idempotency_key="k"), new_run(idempotency_key="other")])
    assert first[0][1] is True
    assert second[0] == (first[0][0], False)
    assert second[1][1] is True
    assert store.count_states() == {"ENQUEUED": 2}


def test_same_idempotency_key_on_other_job_is_separate(store: SqlStore) -> None:
    store.enqueue([new_run("a", idempotency_key="k"), new_run("b", idempotency_key="k")])
    assert store.count_states() == {"ENQUEUED": 2}


def test_event_and_its_runs_are_stored_once(store: SqlStore) -> None:
    event = Event(new_id(), "paid", {"id": 1}, "evt_1", "test", T0)
    event_id, created, runs = store.record_event(event, [new_run(), new_run()])
    assert created and event_id == event.id and len(runs) == 2
    dup = Event(new_id(), "paid", {"id": 1}, "evt_1", "test", T0)
    assert store.record_event(dup, [new_run()]) == (event.id, False, [])
    assert store.count_states() == {"ENQUEUED": 2}
    stored = store.events("paid")
    assert [e.payload for e in stored] == [{"id": 1}]


def test_claim_leases_in_priority_order_and_only_known_names(store: SqlStore) -> None:
    low = new_run(priority=0)
    high = new_run(priority=5)
    later = new_run(run_after=T0 + 60)
    store.enqueue([low, high, later, new_run("other")])
    runs = claim(store, limit=10)
    assert [r.id for r in runs] == [high.id, low.id]
    assert all(r.state == RunState.RUNNING and r.lease_owner == "w1" for r in runs)
    assert all(r.attempt == 1 and r.lease_token == 1 for r in runs)
    assert runs[0].lease_expires_at == T0 + 30.0
    assert claim(store, now=T0 + 61)[0].id == later.id


def test_concurrent_claimers_never_share_a_run(store: SqlStore) -> None:
    store.enqueue([new_run() for _ in range(200)])
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        ids: list[str] = []
        while batch := claim(store, owner=name, limit=7):
            ids += [r.id for r in batch]
        got[name] = ids

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 200 and len(set(all_ids)) == 200


def test_limited_claims_respect_the_limit_across_claimers(store: SqlStore) -> None:
    store.enqueue(
        [new_run(concurrency_key="job", concurrency_limit=3) for _ in range(10)]
        + [new_run(concurrency_key="job:acme", concurrency_limit=1) for _ in range(3)]
    )
    assert claim(store) == []  # limited runs are only claimed by a limited claim
    results: list[int] = []

    def worker(name: str) -> None:
        results.append(len(claim(store, owner=name, limited=True)))

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    running = store.list_runs(RunFilter(states=("RUNNING",), limit=100))
    per_key: dict[str, int] = {}
    for run in running:
        per_key[run.concurrency_key] = per_key.get(run.concurrency_key, 0) + 1
    assert per_key == {"job": 3, "job:acme": 1}
    assert sum(results) == 4


def test_heartbeat_extends_leases_and_reports_cancel_requests(store: SqlStore) -> None:
    store.enqueue([new_run(), new_run()])
    a, b = claim(store)
    store.cancel(b.id, T0)
    beats = {
        rid: (tok, cancel) for rid, tok, cancel in store.heartbeat("w1", [a.id, b.id], T0 + 10, 30)
    }
    assert beats == {a.id: (1, False), b.id: (1, True)}
    assert store.get_run(a.id).lease_expires_at == T0 + 40
    assert store.heartbeat("someone-else", [a.id], T0, 30) == []
    # A run the worker no longer names is not renewed: it expires and is reclaimed.
    assert [rid for rid, _, _ in store.heartbeat("w1", [a.id], T0 + 20, 30)] == [a.id]
    assert store.get_run(b.id).lease_expires_at == T0 + 40


def test_expired_leases_are_requeued_then_failed_after_too_many(store: SqlStore) -> None:
    store.enqueue([new_run()])
    (run,) = claim(store)
    assert store.reap_expired(T0 + 10, max_reclaims=2) == 0  # lease still valid
    assert store.reap_expired(T0 + 31, max_reclaims=2) == 1
    requeued = store.get_run(run.id)
    assert requeued.state == RunState.ENQUEUED and requeued.reclaims == 1
    (again,) = claim(store, now=T0 + 40)
    assert again.lease_token == 2 and again.attempt == 2
    store.reap_expired(T0 + 100, max_reclaims=2)
    failed = store.get_run(run.id)
    assert failed.state == RunState.FAILED
    assert failed.error["type"] == "LeaseExpired"


def test_completion_is_fenced_by_the_lease_token(store: SqlStore) -> None:
    store.enqueue([new_run()])
    (stale,) = claim(store)
    store.reap_expired(T0 + 31, max_reclaims=5)
    (fresh,) = claim(store, owner="w2", now=T0 + 32)
    late = Completion(stale.id, stale.lease_token, RunState.SUCCEEDED, T0 + 33, result="1")
    assert store.complete([late]) == 0
    assert store.get_run(stale.id).state == RunState.RUNNING
    done = Completion(fresh.id, fresh.lease_token, RunState.SUCCEEDED, T0 + 34, result='"ok"')
    assert store.complete([done]) == 1
    final = store.get_run(fresh.id)
    assert (final.state, final.result, final.lease_owner) == (RunState.SUCCEEDED, "ok", None)


def test_retry_completion_requeues_with_a_later_start(store: SqlStore) -> None:
    store.enqueue([new_run()])
    (run,) = claim(store)
    error = serialization.dumps({"type": "X", "message": "boom"}, what="e")
    store.complete(
        [Completion(run.id, 1, RunState.ENQUEUED, None, error=error, failures=1, run_after=T0 + 5)]
    )
    again = store.get_run(run.id)
    assert (again.state, again.failures, again.run_after) == (RunState.ENQUEUED, 1, T0 + 5)
    assert claim(store, now=T0 + 1) == []
    assert len(claim(store, now=T0 + 5)) == 1


def test_step_checkpoints_are_fenced_and_never_overwritten(store: SqlStore) -> None:
    store.enqueue([new_run()])
    (run,) = claim(store)
    assert store.save_step(step(run, "a", "FAILED", result=None))
    assert store.save_step(step(run, "a", "SUCCEEDED", result='{"v":1}'))
    assert not store.save_step(step(run, "a", "SUCCEEDED", result='{"v":2}'))
    assert not store.save_step(step(run, "b", token=run.lease_token + 1))
    (saved,) = store.steps(run.id)
    assert (saved.key, saved.state, saved.result, saved.attempts) == ("a", "SUCCEEDED", {"v": 1}, 2)


def test_cancel_and_retry(store: SqlStore) -> None:
    store.enqueue([queued := new_run(), running := new_run()])
    assert store.cancel(queued.id, T0).state == RunState.CANCELLED
    (claimed,) = claim(store)
    assert claimed.id == running.id
    assert store.cancel(running.id, T0).cancel_requested
    with pytest.raises(InvalidStateError, match="already ended CANCELLED"):
        store.cancel(queued.id, T0)
    with pytest.raises(InvalidStateError, match="only FAILED or CANCELLED"):
        store.retry(running.id, T0)
    retried = store.retry(queued.id, T0 + 1)
    assert (retried.state, retried.cancel_requested) == (RunState.ENQUEUED, False)


def test_release_returns_runs_to_the_queue(store: SqlStore) -> None:
    store.enqueue([new_run(), new_run()])
    a, b = claim(store)
    assert store.release("w1", [a.id], T0 + 1) == 1
    assert store.get_run(a.id).state == RunState.ENQUEUED
    assert store.get_run(b.id).state == RunState.RUNNING
    assert store.release("other", [b.id], T0 + 1) == 0


def test_lookups_and_listing(store: SqlStore) -> None:
    with pytest.raises(RunNotFound) as err:
        store.get_run("nope")
    assert err.value.run_id == "nope"
    store.enqueue([new_run("a"), new_run("b"), new_run("b")])
    assert len(store.list_runs(RunFilter(names=("b",)))) == 2
    assert store.count_states(["a"]) == {"ENQUEUED": 1}
    newest_first = store.list_runs(RunFilter(limit=2))
    assert newest_first[0].id > newest_first[1].id
    older = store.list_runs(RunFilter(before_id=newest_first[1].id))
    assert len(older) == 1
