"""Retention: how long finished runs are kept, and pruning them without losing what reports
and the audit chain need (docs/reliability.md, "Retention").

A `RetentionPolicy` holds a default (`App(retention="30d")`, `$ROTA_RETENTION`, or `rota db
prune --older-than`) and each definition's own (`@app.job(retention="7d")`), which wins over
the default for that job's runs. `prune` applies it in small batches (storage/retention.py
says what each batch deletes and keeps): finished runs with their rows, rolled up into daily
cost aggregates first; old events; and the oldest audit records behind a checkpoint. It
writes a `retention.pruned` audit record when it deleted anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .clock import iso
from .cost.history import run_costs
from .cost.rollup import to_rollups
from .durations import Duration
from .jobs import retention_seconds
from .storage.base import RetentionStore
from .storage.retention import RECORD_TABLES, CostRollup, RunBatch

RETENTION_ENV = "ROTA_RETENTION"
RETENTION_PRUNED = "retention.pruned"
ACTOR = "rota:retention"
DAILY_KEY = "retention_next_prune"  # in rota_meta: when the schedulers prune next
DAY = 86400.0


def default_retention(configured: Duration | None) -> float | None:
    """The default retention: the one configured in code, else $ROTA_RETENTION, else none
    (keep runs for ever)."""
    if configured is not None:
        return retention_seconds(configured, what="retention")
    text = os.environ.get(RETENTION_ENV, "").strip()
    return retention_seconds(text, what=f"${RETENTION_ENV}") if text else None


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished runs are kept: `per_name` by run name, else `default_s` (None:
    for ever). Events and audit records follow the default."""

    default_s: float | None = None
    per_name: Mapping[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.default_s is not None or bool(self.per_name)


@dataclass
class PruneReport:
    """What a prune removed, or with dry_run would remove."""

    dry_run: bool
    cutoff: float | None  # the default's cutoff (events and audit); None: no default
    runs: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    events: int = 0
    records: dict[str, int] = field(default_factory=dict)  # by table: ticks, alerts, ...
    audit_records: int = 0
    checkpoint_seq: int | None = None
    per_name: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": None if self.cutoff is None else iso(self.cutoff),
            "runs": self.runs,
            "runs_by_name": dict(sorted(self.per_name.items())),
            "rows": dict(sorted(self.rows.items())),
            "events": self.events,
            "records": dict(sorted(self.records.items())),
            "audit_records": self.audit_records,
            "audit_checkpoint_seq": self.checkpoint_seq,
        }


def summarize(batch: RunBatch) -> list[CostRollup]:
    """A batch of runs about to be deleted, as the daily roll-ups cost reports read."""
    return to_rollups(run_costs(batch.rows, batch.usage, batch.sessions))


def prune(
    store: RetentionStore,
    policy: RetentionPolicy,
    now: float,
    *,
    dry_run: bool = False,
    batch: int = 500,
    stopping: Callable[[], bool] = lambda: False,
) -> PruneReport:
    """Apply the policy: batches of at most `batch` runs, each its own short transaction.
    `stopping` is asked between batches (a scheduler shutting down): what is left waits for
    the next prune."""
    cutoff = None if policy.default_s is None else now - policy.default_s
    report = PruneReport(dry_run, cutoff)
    month = month_start(now)
    for names, except_names, run_cutoff in _groups(policy, now):
        if stopping():
            break
        if dry_run:
            count = store.count_prunable_runs(
                run_cutoff, month_start=month, names=names, except_names=except_names
            )
            _count(report, names, count)
            continue
        while ids := store.prunable_runs(
            run_cutoff, month_start=month, names=names, except_names=except_names, limit=batch
        ):
            pruned = store.prune_runs(ids, summarize)
            _count(report, names, pruned.runs)
            for table, n in pruned.rows.items():
                report.rows[table] = report.rows.get(table, 0) + n
            if not pruned.runs or stopping():
                break  # taken by another pruner, or shutting down: the next turn goes on
    if cutoff is not None and not stopping():
        _prune_old(store, report, cutoff, policy)
    return report


def _prune_old(
    store: RetentionStore, report: PruneReport, cutoff: float, policy: RetentionPolicy
) -> None:
    """Events and the other records that only look back, then the record of this prune,
    then the audit chain's oldest records."""
    if report.dry_run:
        report.events = store.count_events(cutoff)
        report.records = {table: store.count_records(table, cutoff) for table in RECORD_TABLES}
        report.audit_records = store.prunable_audit(cutoff)
        return
    while n := store.prune_events(cutoff):
        report.events += n
    for table in RECORD_TABLES:
        report.records[table] = 0
        while n := store.prune_records(table, cutoff):
            report.records[table] += n
    detail = {
        "older_than_s": policy.default_s,
        "cutoff": iso(cutoff),
        "runs": report.runs,
        "events": report.events,
        "records": report.records,
    }
    if report.runs or report.events or any(report.records.values()):
        store.audit(ACTOR, RETENTION_PRUNED, detail=detail)
    head = store.audit_head()
    while head is not None:
        n, record = store.prune_audit(cutoff, ACTOR, detail, through=head.seq)
        if not n or record is None:
            break
        report.audit_records += n
        report.checkpoint_seq = int(record.detail["through_seq"])


def _groups(
    policy: RetentionPolicy, now: float
) -> list[tuple[Sequence[str] | None, Sequence[str], float]]:
    """(names, names left out, cutoff) per retention: each name with its own, then the
    default for every other name."""
    groups: list[tuple[Sequence[str] | None, Sequence[str], float]] = [
        ([name], (), now - keep) for name, keep in sorted(policy.per_name.items())
    ]
    if policy.default_s is not None:
        groups.append((None, sorted(policy.per_name), now - policy.default_s))
    return groups


def _count(report: PruneReport, names: Sequence[str] | None, n: int) -> None:
    report.runs += n
    key = names[0] if names else "(default)"
    report.per_name[key] = report.per_name.get(key, 0) + n


def month_start(now: float) -> float:
    """The start of the UTC month of `now`: runs with model usage since then stay, because
    monthly budgets read what was spent from them."""
    moment = datetime.fromtimestamp(now, UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()


def next_prune(now: float, every_s: float = DAY) -> float:
    """When the schedulers prune next after pruning at `now`."""
    return now + every_s
