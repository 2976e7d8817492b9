"""The store interface, one protocol per consumer, and `Store`, all of them together.

A consumer types its store with the narrow protocol it needs (the worker a `RunQueue`, the
vault a `SecretStore`, ...), so what each one reads and writes is written down here, and a
test double needs only those methods. `Store` is everything; `SqlStore` implements it for
SQLite and PostgreSQL (mypy checks that at the end of storage/sql.py), and the contract test
suite in tests/integration/test_store_contract.py runs against both. All times are epoch
seconds passed in by the caller, so a fake clock drives the store as well as the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..model import (
    Completion,
    Debounced,
    Event,
    Execution,
    ModelCall,
    NewRun,
    NewWait,
    Rejection,
    Run,
    RunFilter,
    Schedule,
    Step,
    StepRecord,
    Tick,
    Wait,
)

if TYPE_CHECKING:
    from .agent_cache import CachedDecision
    from .alerts import AlertRecord, FailedRun, OverdueApproval, ScheduleHealth
    from .approval_records import ApprovalRequest
    from .audit import AuditEntry, AuditHead, AuditRecord, Checkpoint
    from .dashboard import WindowRun
    from .dialects import Dialect
    from .gauges import LiveRuns, WaitingApprovals
    from .history import RunRow, RunSession, RunUsage
    from .limits import Charge
    from .principals import Change, Principal, TokenRecord
    from .retention import CostRollup, PrunedRuns, Summarize
    from .schedules import Decide
    from .secrets import SecretRecord
    from .shadow import ShadowRecord
    from .usage import BudgetCharge, BudgetRefusal, Hold, UsageGroup, UsageTotal
    from .waits import Parking


class RunQueue(Protocol):
    """The worker's (rota.worker): lease runs, keep and end their leases, find the next
    wake-up. Narrow because the worker is the only holder of leases and needs nothing else: a
    fake queue for a worker test implements these methods and no more."""

    @property
    def dialect(self) -> Dialect: ...

    def claim(
        self,
        owner: str,
        names: Sequence[str],
        limit: int,
        now: float,
        lease_s: float,
        *,
        limited: bool = False,
        due_by: float | None = None,
        ahead: bool = False,
    ) -> list[Run]:
        """Lease up to `limit` ready runs of the given names to `owner`. With `limited`,
        claims only runs with a concurrency key, never exceeding its limit across workers.
        With `ahead`, only runs due after `now` (and by `due_by`): runs leased ahead of
        their time, which hold no worker slot until then."""
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
        self,
        completions: Sequence[Completion],
        executions: Sequence[Execution] = (),
        *,
        audit: Sequence[AuditEntry] = (),
    ) -> int:
        """Record run outcomes; each applies only if its lease token is still current. Adds
        the executions' time to their runs' compute time in the same transaction, each
        execution once however often it is written, and appends `audit` to the audit chain
        in it too (a worker's run.started records). Returns the outcomes applied."""
        ...

    def release(self, owner: str, run_ids: Sequence[str], now: float) -> int:
        """Give leased runs back to the queue (graceful shutdown)."""
        ...

    def steps(self, run_id: str) -> list[Step]: ...

    def count_states(self, names: Sequence[str] = ()) -> dict[str, int]: ...

    def wake_times(self, names: Sequence[str]) -> tuple[float | None, float | None]:
        """(earliest due queued run of these jobs, earliest deadline of an open wait)."""
        ...

    def wake_due_waits(self, now: float, limit: int = 500) -> float | None:
        """Time out open waits whose deadline has passed and queue their runs; returns the
        next deadline."""
        ...

    def audit_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append audit records in one transaction, in order."""
        ...


class StepStore(Protocol):
    """A durable run's (rota.durable): checkpoint its steps, park on its waits. Narrow
    because a run body writes only its own run, each write fenced by its lease token."""

    def save_step(self, record: StepRecord, model_calls: Sequence[ModelCall] = ()) -> bool:
        """Checkpoint a step, with the metering of the model calls it made, in one
        transaction; False when the writer no longer holds the run's lease."""
        ...

    def save_steps(self, items: Sequence[tuple[StepRecord, Sequence[ModelCall]]]) -> list[bool]:
        """`save_step` of several runs' steps in one transaction (a worker batches the
        checkpoints of its concurrent runs): whether each was saved, in order."""
        ...

    def park(self, wait: NewWait, now: float) -> Parking:
        """Resolve a wait at once (a matching event is already stored, or its deadline has
        passed: its step is checkpointed) or park the run on it (WAITING, no lease). Fenced
        by the lease token; refused ("cancelled") when a cancel was requested."""
        ...


class EventStore(Protocol):
    """What starts runs (App.enqueue and App.emit, the webhook routes, `rota events`):
    enqueue them, store the events (and refused webhooks) behind them. Narrow because starting
    a run never reads or changes a running one."""

    def enqueue(self, runs: Sequence[NewRun]) -> list[tuple[str, bool]]:
        """Insert runs; a run whose (name, idempotency_key) exists is not inserted again.
        Returns (run id, created) per input, the existing id for duplicates."""
        ...

    def record_event(
        self, event: Event, runs: Sequence[NewRun], debounced: Sequence[Debounced] = ()
    ) -> tuple[str, bool, list[str]]:
        """Store an event and the runs it triggers in one transaction, in which it also
        resolves the open waits it fits (queueing their runs). A duplicate event (same name
        and idempotency key) does nothing: returns (existing id, False, [])."""
        ...

    def get_event(self, event_id: str) -> Event: ...

    def events(
        self, name: str | None = None, limit: int = 50, before_id: str | None = None
    ) -> list[Event]: ...

    def record_rejection(self, rejection: Rejection) -> None: ...

    def rejections(self, hook: str | None = None, limit: int = 50) -> list[Rejection]: ...


class RunReader(Protocol):
    """What shows runs (the API, `rota runs`, replay): runs, their steps and their waits.
    Read-only, so that code that only shows runs cannot change one."""

    def get_run(self, run_id: str) -> Run:
        """The run, or RunNotFound."""
        ...

    def list_runs(self, flt: RunFilter) -> list[Run]: ...

    def child_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Runs whose parent is one of these (escalations, shadow runs)."""
        ...

    def steps(self, run_id: str) -> list[Step]: ...

    def steps_page(self, run_id: str, after_seq: int, limit: int) -> list[Step]: ...

    def count_states(self, names: Sequence[str] = ()) -> dict[str, int]: ...

    def waits(self, run_ids: Sequence[str]) -> list[Wait]: ...

    def runs_changed(self, since: float, limit: int) -> list[Run]:
        """Runs created, started or finished at or after `since` (at most `limit` of each),
        for the API's live stream."""
        ...


class RunControl(Protocol):
    """What an operator does to a run (`rota runs cancel` and `retry`; `resolve_wait` for
    decisions): the few writes to a run from outside the worker, each refused when the run
    (or its wait) is not in a state that allows it."""

    def cancel(self, run_id: str, now: float) -> Run:
        """Cancel a queued run at once, or ask the worker running it to stop."""
        ...

    def retry(self, run_id: str, now: float) -> Run:
        """Queue a FAILED or CANCELLED run again; completed steps keep their checkpoints."""
        ...

    def resolve_wait(self, run_id: str, step_key: str, outcome: Any, now: float) -> bool:
        """Resolve an open wait with a decision; False when it is not open."""
        ...


class ApprovalStore(Protocol):
    """Approval requests (rota.approvals: ctx.approval, ask_human; the API and `rota
    approvals`): ask, read, decide. Narrow because a request is only ever made and decided
    through these, each one transaction with its wait and audit records."""

    def request_approval(
        self,
        wait: NewWait,
        now: float,
        *,
        request: ApprovalRequest,
        audit: Sequence[AuditEntry] = (),
        notify: Sequence[NewRun] = (),
    ) -> Parking:
        """Park the run on the request's wait, with the request, its audit records and the
        runs that announce it, in one transaction."""
        ...

    def approval(self, approval_id: str) -> ApprovalRequest:
        """The request, or ApprovalNotFound."""
        ...

    def approval_for_step(self, run_id: str, step_key: str) -> ApprovalRequest | None: ...

    def approvals_changed(self, since: float, limit: int) -> list[ApprovalRequest]:
        """Requests made or decided at or after `since`, for the API's live stream."""
        ...

    def approvals(
        self, *, statuses: Sequence[str] = ..., limit: int = 100
    ) -> list[ApprovalRequest]: ...

    def decide_approval(
        self,
        approval_id: str,
        decider: str,
        approve: bool,
        comment: str | None,
        now: float,
        *,
        via: str,
        note: dict[str, Any] | None = None,
    ) -> ApprovalRequest:
        """Decide a pending request as `decider` (an approver of it), audited."""
        ...


class AuditWriter(Protocol):
    """Append one audit record: what both the audit log and metering write with."""

    def audit(
        self,
        actor: str,
        action: str,
        *,
        actor_kind: str = "machine",
        subject: str | None = None,
        run_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: float | None = None,
        on_behalf_of: str | None = None,
    ) -> AuditRecord: ...


class AuditLog(AuditWriter, Protocol):
    """The audit log (rota.identity: audit, tokens; the worker's audit batch; `rota
    audit`): append, read, verify. Append-only: nothing here edits or deletes a record."""

    def audit_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append audit records in one transaction, in order."""
        ...

    def audit_records(
        self,
        principal: str | None = None,
        since: float | None = None,
        action: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[AuditRecord]: ...

    def audit_rows(self, after_seq: int, limit: int = 1000) -> list[AuditRecord]: ...

    def audit_tail(self, after_seq: int) -> tuple[AuditHead | None, list[AuditRecord]]: ...

    def audit_head(self) -> AuditHead | None: ...

    def audit_checkpoint(self) -> Checkpoint | None:
        """Where the chain starts once retention pruned its oldest records, if it did."""
        ...

    def audit_record(self, seq: int) -> AuditRecord | None: ...


class MeteringStore(AuditWriter, Protocol):
    """The agent loop's metering (rota.agentloop.metering; the approval gate reads a run's
    model calls): shared budget holds, usage, sessions and their audit. Narrow so that a
    model call's accounting is all a metering double has to fake."""

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

    def model_calls(self, run_id: str) -> list[ModelCall]: ...


class HistoryStore(Protocol):
    """What cost reports read (rota.cost.history): runs, usage, sessions, prices, budget
    use. Read-only: a report never writes."""

    def run_rows(self, since: float, until: float) -> list[RunRow]: ...

    def run_usage(self, since: float, until: float) -> list[RunUsage]: ...

    def run_sessions(self, since: float, until: float) -> list[RunSession]: ...

    def recorded_prices(self, since: float, until: float) -> list[tuple[str, str, float]]: ...

    def cost_rollups(self, since: float, until: float) -> list[CostRollup]:
        """Daily roll-ups of pruned runs, for the days that start in [since, until)."""
        ...

    def pruned_prices(self, since: float, until: float) -> list[tuple[str, str, float]]: ...

    def usage_totals(self, by: UsageGroup, since: float, until: float) -> list[UsageTotal]: ...

    def budget_used(self, charge: BudgetCharge) -> tuple[int, int, int]: ...

    def budget_held(self, charge: BudgetCharge, now: float) -> tuple[int, int, int]: ...


class RetentionStore(AuditWriter, Protocol):
    """What pruning uses (rota.retention; `rota db prune`, the scheduler's daily prune)."""

    def prunable_runs(
        self,
        cutoff: float,
        *,
        month_start: float,
        names: Sequence[str] | None = None,
        except_names: Sequence[str] = (),
        limit: int = 500,
    ) -> list[str]: ...

    def count_prunable_runs(
        self,
        cutoff: float,
        *,
        month_start: float,
        names: Sequence[str] | None = None,
        except_names: Sequence[str] = (),
    ) -> int: ...

    def prune_runs(self, ids: Sequence[str], summarize: Summarize) -> PrunedRuns: ...

    def prune_events(self, cutoff: float, limit: int = 1000) -> int: ...

    def count_events(self, cutoff: float) -> int: ...

    def prune_records(self, table: str, cutoff: float, limit: int = 1000) -> int: ...

    def count_records(self, table: str, cutoff: float) -> int: ...

    def prunable_audit(self, cutoff: float, limit: int = 5000) -> int: ...

    def prune_audit(
        self,
        cutoff: float,
        actor: str,
        detail: dict[str, Any],
        *,
        through: int,
        limit: int = 5000,
    ) -> tuple[int, AuditRecord | None]: ...

    def audit_head(self) -> AuditHead | None: ...

    def claim_due(self, key: str, now: float, next_due: float) -> bool:
        """When `key` is due (never claimed, or its due time has come), move it to
        `next_due` and return True: of many schedulers, one claims each turn."""
        ...


class DecisionCache(Protocol):
    """The agent decision cache (rota.agentloop.cache): read and store a cached decision,
    nothing else."""

    def cached_decision(self, key: str, now: float) -> CachedDecision | None: ...

    def cache_decision(self, decision: CachedDecision) -> None: ...


class ShadowStore(Protocol):
    """Shadow comparisons (rota.shadow writes them, `rota shadow` reads them): nothing else
    is stored about a shadow run beyond the run itself."""

    def record_shadow(self, record: ShadowRecord) -> None:
        """Store a shadow run's comparison with the job it shadows."""
        ...

    def shadow_records(self, name: str, since: float | None = None) -> list[ShadowRecord]: ...


class LimitStore(Protocol):
    """Shared rate limits (rota.agents.models.ratelimited): take a turn, correct it by what
    the call used. The two calls a model wrapper makes around each request."""

    def take(self, charges: Mapping[str, Charge], now: float) -> float: ...

    def take_many(self, takes: Sequence[tuple[Mapping[str, Charge], float]]) -> list[float]:
        """`take` of several calls in one transaction, in order (a worker batches its
        concurrent calls' reservations)."""
        ...

    def adjust(self, key: str, seconds: float, now: float) -> None: ...


class SecretStore(Protocol):
    """The vault's ciphertexts and grants (rota.identity.secrets). Narrow so that only the
    vault, which encrypts and decrypts, touches stored secrets."""

    def put_secret(
        self, name: str, ciphertext: str, grants: Sequence[str] | None, now: float
    ) -> None: ...

    def secret(self, name: str) -> SecretRecord | None: ...

    def secrets(self) -> list[SecretRecord]: ...

    def delete_secret(self, name: str) -> bool: ...

    def change_secret_grants(
        self, name: str, add: Sequence[str] = (), remove: Sequence[str] = (), *, now: float
    ) -> tuple[str, ...] | None: ...


class PrincipalStore(Protocol):
    """Principals and API tokens (rota.identity: admin, directory, tokens; the worker's
    admission of a run's principal; `rota principals`). Every change goes through
    `change_principal` or the token calls, each with its audit record."""

    def principal(self, name: str) -> Principal | None: ...

    def principals(self) -> list[Principal]: ...

    def change_principal(self, name: str, change: Change, now: float) -> Principal | None:
        """Read-modify-write one principal under a row lock, with its audit records, in one
        transaction. Returns the principal as stored afterwards."""
        ...

    def add_token(self, record: TokenRecord, entry: AuditEntry) -> None: ...

    def token(self, token_id: str) -> TokenRecord | None: ...

    def tokens(self, principal: str | None = None) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, now: float, entry: AuditEntry) -> bool: ...


class ScheduleStore(Protocol):
    """The scheduler's (rota.scheduler; `rota schedules`): schedules, their due ticks and
    the decisions about them. Narrow because the scheduler only turns ticks into runs, in
    the transaction that decides them."""

    def sync_schedules(self, wanted: Sequence[Schedule]) -> list[str]: ...

    def schedules(self, names: Sequence[str] | None = None) -> list[Schedule]: ...

    def set_paused(self, name: str, paused: bool, now: float) -> bool: ...

    def next_due(self, names: Sequence[str]) -> float | None: ...

    def process_due(
        self,
        names: Sequence[str],
        now: float,
        limit: int,
        decide: Decide,
        watch_overlap: Sequence[str] = (),
        watch_events: Mapping[str, str] | None = None,
        due_by: float | None = None,
    ) -> int: ...

    def record_ticks(self, runs: Sequence[NewRun], ticks: Sequence[Tick]) -> int: ...

    def ticks(
        self,
        schedule: str | None = None,
        *,
        outcome: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Tick]: ...

    def keyed_runs(self, job: str, keys: Sequence[str]) -> dict[str, str]: ...


class DashboardStore(Protocol):
    """What the dashboard keeps in rota_meta (sessions, login codes, its key) and the runs
    of a window it summarises (storage/dashboard.py)."""

    def meta_value(self, key: str) -> str | None: ...

    def meta_keep(self, key: str, value: str) -> str: ...

    def meta_take(self, key: str) -> str | None: ...

    def meta_prefixed(self, prefix: str) -> dict[str, str]: ...

    def meta_drop(self, keys: list[str]) -> None: ...

    def window_runs(self, since: float, until: float, limit: int) -> list[WindowRun]: ...

    def audit_page(
        self,
        *,
        actor: str | None,
        action: str | None,
        since: float | None,
        until: float | None,
        before_seq: int | None,
        limit: int,
    ) -> list[AuditRecord]: ...


class GaugeReader(Protocol):
    """What a metrics scrape reads (rota.observability.collectors): the unfinished runs and
    the approvals waiting, nothing else."""

    def live_runs(self, now: float) -> list[LiveRuns]: ...

    def waiting_approvals(self) -> WaitingApprovals: ...

    def budget_used(self, charge: BudgetCharge) -> tuple[int, int, int]: ...


class AlertStore(Protocol):
    """Alerts (rota.alerts): raising them deduplicated by key with their delivery runs,
    recording deliveries, the watchdog's marks and what it reads to find what to alert on."""

    def raise_alerts(self, alerts: Sequence[tuple[AlertRecord, NewRun | None]]) -> list[str]: ...

    def alert(self, alert_id: str) -> AlertRecord | None: ...

    def alerts(self, *, limit: int = 50, kind: str | None = None) -> list[AlertRecord]: ...

    def record_delivery(
        self, alert_id: str, *, state: str, at: float, error: str | None = None
    ) -> None: ...

    def alert_mark(self, key: str, at: float) -> float: ...

    def failed_runs(self, since: float, limit: int = 500) -> list[FailedRun]: ...

    def overdue_approvals(
        self, low: float, high: float, limit: int = 500
    ) -> list[OverdueApproval]: ...

    def alert_keys(self, keys: Sequence[str]) -> set[str]: ...

    def last_fired(self, schedule: str) -> float | None: ...

    def schedule_health(self, schedule: str) -> ScheduleHealth: ...


class Store(
    RunQueue,
    StepStore,
    EventStore,
    RunReader,
    RunControl,
    ApprovalStore,
    AuditLog,
    MeteringStore,
    HistoryStore,
    RetentionStore,
    DecisionCache,
    ShadowStore,
    LimitStore,
    SecretStore,
    PrincipalStore,
    ScheduleStore,
    GaugeReader,
    AlertStore,
    DashboardStore,
    Protocol,
):
    """Everything: what the composition roots hold (the App, and through it the API; the
    CLI), which hand each consumer the narrow protocol above that it needs."""

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to the latest version; returns (from, to). Refuses a newer schema."""
        ...

    def schema_version(self) -> int: ...

    def close(self) -> None: ...
