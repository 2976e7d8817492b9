"""A recorded history from the store, as the RunCost records that reports and plan
comparisons take, and a price table that can price all of it.

Per run: its model usage (summed per model from `rota_usage`), its agent session seconds,
and its compute seconds. Compute is the job path's own worker time: how long the run's body
executed (`compute_s` in `rota_runs`, which the worker measures from the body's start to its
end and writes with the run's outcome), summed over its executions (every attempt of a
retried run, each execution of a workflow that parked on a wait), less the time agents worked
in it. Not counted: time a claimed run waited for a worker slot (the prefetch buffer), a
retry's backoff, time parked on a wait, and an execution lost with a killed worker. It is
wall time, not CPU time: runs share a worker process, whose CPU time cannot honestly be
split between them. A run none of whose executions was measured (recorded by a rota before
schema version 10) is estimated as before: its wall time (`finished_at - started_at`) less
the time it was parked.

An escalation (`ctx.escalate`: an agent run whose parent is the job that handed it the
item) is folded into its job's record when both are in the window: one piece of work, kind
`hybrid`, with the job's compute and the agent's tokens and session. Shadow runs stay agent
runs of their own: they are the price of evaluating the agent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol

from ..errors import UnknownPrice
from ..jobs import ESCALATION_TRIGGER as ESCALATION
from ..model import TokenCounts
from ..storage.history import RunRow, RunSession, RunUsage
from ..storage.retention import CostRollup
from .prices import PriceOverride, PriceTable
from .pricing import price_from_json
from .records import RunCost, RunKind
from .rollup import rollup_records


class HistoryStore(Protocol):
    def run_rows(self, since: float, until: float) -> list[RunRow]: ...

    def run_usage(self, since: float, until: float) -> list[RunUsage]: ...

    def run_sessions(self, since: float, until: float) -> list[RunSession]: ...

    def recorded_prices(self, since: float, until: float) -> list[tuple[str, str, float]]: ...

    def cost_rollups(self, since: float, until: float) -> list[CostRollup]: ...

    def pruned_prices(self, since: float, until: float) -> list[tuple[str, str, float]]: ...


@dataclass(frozen=True)
class History:
    """Runs that started in [since, until) and a table pricing every model they used."""

    records: tuple[RunCost, ...]
    table: PriceTable
    since: datetime
    until: datetime

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.since, self.until


def load_history(
    store: HistoryStore,
    since: datetime,
    until: datetime,
    overrides: Sequence[PriceOverride] = (),
) -> History:
    """The runs that started in [since, until): those still stored, one record each, and
    those pruned, one record per roll-up (rota.cost.rollup) of the window's whole days."""
    start, end = since.timestamp(), until.timestamp()
    records = run_costs(
        store.run_rows(start, end), store.run_usage(start, end), store.run_sessions(start, end)
    )
    pruned = rollup_records(store.cost_rollups(start, end))
    prices = [*store.recorded_prices(start, end), *store.pruned_prices(start, end)]
    table = history_table(overrides, sorted(prices, key=lambda p: (p[0], p[2])))
    return History((*records, *pruned), table, since, until)


def run_costs(
    rows: Sequence[RunRow], run_usage: Sequence[RunUsage], run_sessions: Sequence[RunSession]
) -> list[RunCost]:
    """One record per run, an escalated agent run folded into its job when both are here."""
    usage: dict[str, dict[str, TokenCounts]] = defaultdict(dict)
    agents: dict[str, str] = {}
    for u in run_usage:
        usage[u.run_id][u.model] = u.usage
        agents[u.run_id] = min(agents.get(u.run_id, u.agent), u.agent)
    sessions = {s.run_id: s for s in run_sessions}
    records = {
        row.id: _record(row, usage.get(row.id, {}), agents.get(row.id), sessions.get(row.id))
        for row in rows
        if not _escalated(row)
    }
    for row in rows:
        if _escalated(row):
            child = _record(row, usage.get(row.id, {}), agents.get(row.id), sessions.get(row.id))
            parent = records.get(row.parent_id or "")
            records[row.parent_id or row.id] = _fold(parent, child) if parent else child
    return list(records.values())


def history_table(
    overrides: Sequence[PriceOverride], recorded: Sequence[tuple[str, str, float]]
) -> PriceTable:
    """The user's overrides over the list prices, plus, for a model neither knows (a
    scripted model, or one an agent priced with `price=`), the prices its calls were
    recorded at: each from the day it was first used (the first one: always)."""
    table = PriceTable(overrides)
    extra: list[PriceOverride] = []
    seen: set[str] = set()
    for model, text, first in recorded:
        at = datetime.fromtimestamp(first, UTC)
        if model not in seen:
            try:
                table.resolve(model, at)
                continue  # the list price (or the user's override) prices it
            except UnknownPrice:
                pass
        effective = date.min if model not in seen else at.date()
        seen.add(model)
        extra.append(PriceOverride(model, price_from_json(text), effective))
    return PriceTable([*overrides, *extra]) if extra else table


def _escalated(row: RunRow) -> bool:
    return row.trigger == ESCALATION and row.parent_id is not None


def _fold(job: RunCost, agent: RunCost) -> RunCost:
    """A job and the agent run it escalated to, as one hybrid record."""
    usage = dict(job.usage)
    for model, used in agent.usage.items():
        usage[model] = usage[model] + used if model in usage else used
    return replace(
        job,
        kind="hybrid",
        agent=job.agent or agent.agent,
        usage=usage,
        session_seconds=job.session_seconds + agent.session_seconds,
        compute_seconds=job.compute_seconds + agent.compute_seconds,
        tool_calls=job.tool_calls + agent.tool_calls,
    )


def _record(
    row: RunRow, usage: dict[str, TokenCounts], agent: str | None, session: RunSession | None
) -> RunCost:
    session_s = Decimal(str(round(session.seconds, 6))) if session else Decimal(0)
    compute = max(Decimal(0), Decimal(str(round(_body_seconds(row), 6))) - session_s)
    kind: RunKind = "agent" if row.kind == "agent" else "hybrid" if usage or session else "job"
    return RunCost(
        run_id=row.id,
        name=row.name,
        kind=kind,
        started_at=datetime.fromtimestamp(row.started_at, UTC),
        principal=row.principal,
        trigger=row.trigger,
        agent=agent,
        usage=usage,
        session_seconds=session_s,
        compute_seconds=compute,
        tool_calls=session.tool_calls if session else 0,
    )


def _body_seconds(row: RunRow) -> float:
    """How long the run's body executed; for a run recorded without that measurement, its
    wall time less the time it was parked (which counts any wait for a slot or a retry)."""
    if row.compute_s is not None:
        return row.compute_s
    wall = 0.0 if row.finished_at is None else row.finished_at - row.started_at
    return wall - row.parked_s
