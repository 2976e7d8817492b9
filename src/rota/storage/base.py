"""The store interface: everything the scheduler, workers, API and CLI need from storage.

One implementation (SqlStore) serves SQLite and PostgreSQL; the contract test suite in
tests/integration/test_store_contract.py runs against both. All times are epoch seconds
passed in by the caller, so a fake clock drives the store as well as the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..model import Completion, Event, NewRun, Run, RunFilter, Step, StepRecord


class Store(Protocol):
    def migrate(self) -> tuple[int, int]:
        """Bring the schema to the latest version; returns (from, to). Refuses a newer schema."""
        ...

    def schema_version(self) -> int: ...

    def enqueue(self, runs: Sequence[NewRun]) -> list[tuple[str, bool]]:
        """Insert runs; a run whose (name, idempotency_key) exists is not inserted again.
        Returns (run id, created) per input, the existing id for duplicates."""
        ...

    def record_event(self, event: Event, runs: Sequence[NewRun]) -> tuple[str, bool, list[str]]:
        """Store an event and the runs it triggers in one transaction. A duplicate event
        (same name and idempotency key) enqueues nothing: returns (existing id, False, [])."""
        ...

    def claim(
        self,
        owner: str,
        names: Sequence[str],
        limit: int,
        now: float,
        lease_s: float,
        *,
        limited: bool = False,
    ) -> list[Run]:
        """Lease up to `limit` ready runs of the given names to `owner`. With `limited`,
        claims only runs with a concurrency key, never exceeding its limit across workers."""
        ...

    def heartbeat(
        self, owner: str, run_ids: Sequence[str], now: float, lease_s: float
    ) -> list[tuple[str, int, bool]]:
        """Extend the owner's leases on these runs; returns (run id, lease token, cancel
        requested) for those it still holds. Runs it owns but no longer names expire."""
        ...

    def reap_expired(self, now: float, max_reclaims: int) -> int:
        """Requeue runs whose lease expired (their worker died); fail those reclaimed too
        often. Returns how many runs were touched."""
        ...

    def complete(self, completions: Sequence[Completion]) -> int:
        """Record run outcomes; each applies only if its lease token is still current."""
        ...

    def release(self, owner: str, run_ids: Sequence[str], now: float) -> int:
        """Give leased runs back to the queue (graceful shutdown)."""
        ...

    def save_step(self, record: StepRecord) -> bool:
        """Checkpoint a step; False when the writer no longer holds the run's lease."""
        ...

    def steps(self, run_id: str) -> list[Step]: ...

    def get_run(self, run_id: str) -> Run:
        """The run, or RunNotFound."""
        ...

    def list_runs(self, flt: RunFilter) -> list[Run]: ...

    def count_states(self, names: Sequence[str] = ()) -> dict[str, int]: ...

    def cancel(self, run_id: str, now: float) -> Run:
        """Cancel a queued run at once, or ask the worker running it to stop."""
        ...

    def retry(self, run_id: str, now: float) -> Run:
        """Queue a FAILED or CANCELLED run again; completed steps keep their checkpoints."""
        ...

    def events(self, name: str | None = None, limit: int = 50) -> list[Event]: ...

    def close(self) -> None: ...
