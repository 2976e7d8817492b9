"""The store interface: everything the scheduler, workers, API and CLI need from storage.

One implementation (SqlStore) serves SQLite and PostgreSQL; the contract test suite in
tests/integration/test_store_contract.py runs against both. All times are epoch seconds
passed in by the caller, so a fake clock drives the store as well as the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..model import Completion, Event, NewRun, NewWait, Run, RunFilter, Step, StepRecord, Wait

if TYPE_CHECKING:
    from ..agents.cache import CachedDecision
    from ..identity.principals import Principal
    from ..shadow import ShadowRecord
    from .audit import AuditEntry, AuditRecord
    from .usage import BudgetCharge, BudgetRefusal, Hold, ModelCall
    from .waits import Parking


@dataclass(frozen=True, slots=True)
class Execution:
    """How long one execution of a run's body took (the lease it ran under names it), as
    the worker measured it: from the body's start to its end, whatever ended it (a result,
    an error, a durable wait, an interruption). Not the time the run waited to start."""

    run_id: str
    lease_token: int
    seconds: float


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
        """Store an event and the runs it triggers in one transaction, in which it also
        resolves the open waits it fits (queueing their runs). A duplicate event (same name
        and idempotency key) does nothing: returns (existing id, False, [])."""
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

    def complete(
        self, completions: Sequence[Completion], executions: Sequence[Execution] = ()
    ) -> int:
        """Record run outcomes; each applies only if its lease token is still current. Adds
        the executions' time to their runs' compute time in the same transaction, each
        execution once however often it is written. Returns the outcomes applied."""
        ...

    def release(self, owner: str, run_ids: Sequence[str], now: float) -> int:
        """Give leased runs back to the queue (graceful shutdown)."""
        ...

    def save_step(self, record: StepRecord, model_calls: Sequence[ModelCall] = ()) -> bool:
        """Checkpoint a step, with the metering of the model calls it made, in one
        transaction; False when the writer no longer holds the run's lease."""
        ...

    def steps(self, run_id: str) -> list[Step]: ...

    def get_run(self, run_id: str) -> Run:
        """The run, or RunNotFound."""
        ...

    def list_runs(self, flt: RunFilter) -> list[Run]: ...

    def child_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Runs whose parent is one of these (escalations, shadow runs)."""
        ...

    def count_states(self, names: Sequence[str] = ()) -> dict[str, int]: ...

    def cancel(self, run_id: str, now: float) -> Run:
        """Cancel a queued run at once, or ask the worker running it to stop."""
        ...

    def retry(self, run_id: str, now: float) -> Run:
        """Queue a FAILED or CANCELLED run again; completed steps keep their checkpoints."""
        ...

    def events(self, name: str | None = None, limit: int = 50) -> list[Event]: ...

    # Durable waits (storage/waits.py). record_event also resolves the waits its event fits.

    def park(self, wait: NewWait, now: float) -> Parking:
        """Resolve a wait at once (a matching event is already stored, or its deadline has
        passed: its step is checkpointed) or park the run on it (WAITING, no lease). Fenced
        by the lease token; refused ("cancelled") when a cancel was requested."""
        ...

    def wake_due_waits(self, now: float, limit: int = 500) -> float | None:
        """Time out open waits whose deadline has passed and queue their runs; returns the
        next deadline."""
        ...

    def resolve_wait(self, run_id: str, step_key: str, outcome: object, now: float) -> bool:
        """Resolve an open wait with a decision (approvals); False when it is not open."""
        ...

    def wake_times(self, names: Sequence[str]) -> tuple[float | None, float | None]:
        """(earliest due queued run of these jobs, earliest deadline of an open wait)."""
        ...

    def waits(self, run_ids: Sequence[str]) -> list[Wait]: ...

    # Identity (storage/principals.py, storage/audit.py)

    def principals(self) -> list[Principal]: ...

    def audit_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append audit records in one transaction, in order."""
        ...

    # Metering and shared budgets (storage/usage.py; the agent loop's agents/budgets.py)

    def record_model_call(self, call: ModelCall) -> None:
        """Store a model call's usage and cost once per (run, step); release its holds."""
        ...

    def record_session(
        self,
        run_id: str,
        agent_key: str,
        attempt: int,
        agent: str,
        started_at: float,
        seconds: float,
        tool_calls: int,
    ) -> None: ...

    def reserve_budgets(
        self, charges: Sequence[BudgetCharge], hold: Hold, now: float
    ) -> BudgetRefusal | None:
        """Hold a call's worst case against shared budgets, all or none, in one transaction."""
        ...

    def release_holds(self, run_id: str, step_key: str) -> None: ...

    def audit(
        self,
        actor: str,
        action: str,
        *,
        actor_kind: str = ...,
        subject: str | None = ...,
        run_id: str | None = ...,
        detail: Mapping[str, Any] | None = ...,
        at: float | None = ...,
    ) -> AuditRecord: ...

    def record_shadow(self, record: ShadowRecord) -> None:
        """Store a shadow run's comparison with the job it shadows (storage/shadow.py)."""
        ...

    def cached_decision(self, key: str, now: float) -> CachedDecision | None: ...

    def cache_decision(self, decision: CachedDecision) -> None: ...

    def close(self) -> None: ...
