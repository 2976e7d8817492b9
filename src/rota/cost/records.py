"""What one run used, priced at list price, and grouped for reports.

A `RunCost` is the metering of one run, whatever path it took: a job (compute seconds
only), an agent (tokens per model and session seconds) or a hybrid (a job that escalated
to an agent: both). The store builds them from its metering; everything here is pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

from ..errors import ConfigError
from ..model import TokenCounts
from .price import CacheTTL, as_decimal
from .prices import PriceTable

RunKind = Literal["job", "agent", "hybrid"]
GroupBy = Literal["workflow", "agent", "principal", "day", "kind", "trigger"]
HOUR = Decimal(3600)
NONE = "(none)"


@dataclass(frozen=True)
class RunCost:
    """The metered use of one run. `usage` maps `provider:model` to that model's summed
    usage in the run; `session_seconds` is agent session time, `compute_seconds` the job
    path's own worker time."""

    run_id: str
    name: str  # the workflow, agent or job that ran
    kind: RunKind
    started_at: datetime  # aware
    principal: str | None = None
    trigger: str | None = None
    agent: str | None = None  # the agent that worked in the run, if any
    usage: Mapping[str, TokenCounts] = field(default_factory=dict)
    session_seconds: Decimal = Decimal(0)
    compute_seconds: Decimal = Decimal(0)
    cache_ttl: CacheTTL = "5m"
    batch: bool = False
    tool_calls: int = 0
    # How many runs this record stands for: 1, or more for a day's roll-up of pruned runs
    # (rota.cost.rollup), whose run_id is "rollup:..." and started_at the day's midnight.
    runs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("job", "agent", "hybrid"):
            raise ConfigError(
                f"run {self.run_id}: kind must be job, agent or hybrid, got {self.kind!r}"
            )
        if self.started_at.tzinfo is None:
            raise ConfigError(f"run {self.run_id}: started_at must be timezone-aware")
        object.__setattr__(self, "started_at", self.started_at.astimezone(UTC))
        object.__setattr__(self, "usage", MappingProxyType(dict(self.usage)))
        for name in ("session_seconds", "compute_seconds"):
            value = as_decimal(getattr(self, name), f"run {self.run_id}: {name}")
            if value < 0:
                raise ConfigError(f"run {self.run_id}: {name} must be >= 0, got {value}")
            object.__setattr__(self, name, value)

    @property
    def uses_ai(self) -> bool:
        """Whether a platform's plan bills this run: it called a model or held a session."""
        return bool(self.usage) or self.session_seconds > 0

    @property
    def total_usage(self) -> TokenCounts:
        return sum(self.usage.values(), TokenCounts(requests=0))

    @property
    def tokens(self) -> int:
        return self.total_usage.total


@dataclass(frozen=True)
class PricedRun:
    """A run with its tokens at list price (`tokens_usd`), per model and in total."""

    record: RunCost
    tokens_usd: Decimal
    by_model: Mapping[str, Decimal]


def price_history(records: Iterable[RunCost], table: PriceTable) -> list[PricedRun]:
    """Every run's token cost at the list price in force when it started, oldest first.
    An unpriced model raises UnknownPrice: a report that skipped it would look cheaper."""
    priced = []
    for record in sorted(records, key=lambda r: (r.started_at, r.run_id)):
        by_model = {
            model: table.cost(
                model, usage, record.started_at, cache_ttl=record.cache_ttl, batch=record.batch
            )
            for model, usage in record.usage.items()
        }
        total = sum(by_model.values(), Decimal(0))
        priced.append(PricedRun(record, total, MappingProxyType(by_model)))
    return priced


def compute_usd(record: RunCost, usd_per_hour: Decimal) -> Decimal:
    return record.compute_seconds * usd_per_hour / HOUR


@dataclass(frozen=True)
class ReportRow:
    """Totals for one group of runs."""

    key: str
    runs: int
    usage: TokenCounts
    tokens_usd: Decimal
    compute_usd: Decimal
    session_seconds: Decimal
    compute_seconds: Decimal
    tool_calls: int = 0

    @property
    def total_usd(self) -> Decimal:
        return self.tokens_usd + self.compute_usd


def report(
    records: Iterable[RunCost],
    table: PriceTable,
    *,
    by: GroupBy = "workflow",
    compute_usd_per_hour: Decimal | int = 0,
) -> list[ReportRow]:
    """Runs grouped `by` workflow (the run's name), agent, principal, trigger, UTC day or
    kind, most expensive first (days in date order). `by="kind"` is job versus agent versus
    hybrid."""
    if by not in GroupBy.__args__:  # type: ignore[attr-defined]
        raise ConfigError(f"cannot group a cost report by {by!r}; use one of {GroupBy.__args__}")  # type: ignore[attr-defined]
    rate = as_decimal(compute_usd_per_hour, "compute_usd_per_hour")
    groups: dict[str, list[PricedRun]] = defaultdict(list)
    for run in price_history(records, table):
        groups[_key(run.record, by)].append(run)
    rows = [_row(key, runs, rate) for key, runs in groups.items()]
    if by == "day":
        return sorted(rows, key=lambda r: r.key)
    return sorted(rows, key=lambda r: (-r.total_usd, r.key))


def _key(record: RunCost, by: GroupBy) -> str:
    if by == "day":
        return record.started_at.date().isoformat()
    if by == "workflow":
        return record.name
    if by == "kind":
        return record.kind
    if by == "agent":
        return record.agent or (record.name if record.kind == "agent" else NONE)
    if by == "trigger":
        return record.trigger or NONE
    return record.principal or NONE


def _row(key: str, runs: Sequence[PricedRun], rate: Decimal) -> ReportRow:
    compute_seconds = sum((r.record.compute_seconds for r in runs), Decimal(0))
    return ReportRow(
        key=key,
        runs=sum(r.record.runs for r in runs),
        usage=sum((r.record.total_usage for r in runs), TokenCounts(requests=0)),
        tokens_usd=sum((r.tokens_usd for r in runs), Decimal(0)),
        # One division for the group: per-run thirds of a cent would not add up to a cent.
        compute_usd=compute_seconds * rate / HOUR,
        session_seconds=sum((r.record.session_seconds for r in runs), Decimal(0)),
        compute_seconds=compute_seconds,
        tool_calls=sum(r.record.tool_calls for r in runs),
    )
