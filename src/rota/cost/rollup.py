"""Daily roll-ups of pruned runs: what `rota db prune` keeps of a run's cost, and the
records cost reports read back from it (see storage/retention.py, schema v16).

A roll-up keeps every dimension a report groups by (UTC day, run name, kind, principal,
trigger, agent) and, per model, the tokens; so a report of a pruned period groups and prices
them as it did the runs. Seconds are kept as integer microseconds, which is the precision a
run's record has (rota.cost.history rounds them to six decimals), so sums are exact.

Pricing a day's summed tokens gives the sum of the runs' prices, because a price is linear
in tokens and list prices change by day. One exception: a price with long-context `tiers`
picks its tier from the average prompt per request, which a day's sum averages over more
requests than one run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from decimal import Decimal

from ..model import TokenCounts
from ..storage.retention import CostRollup, utc_day
from .records import RunCost, RunKind

MICRO = Decimal(1_000_000)
_KINDS: dict[str, RunKind] = {"job": "job", "agent": "agent", "hybrid": "hybrid"}
_TOKENS = tuple(f.name for f in fields(TokenCounts))


def to_rollups(records: Iterable[RunCost]) -> list[CostRollup]:
    """Sum run records into roll-up rows: one runs row (model '') per group, and one row
    per model of the group's tokens."""
    rows: dict[tuple[str, ...], CostRollup] = {}
    for record in records:
        base = CostRollup(
            day=utc_day(record.started_at.timestamp()),
            name=record.name,
            kind=record.kind,
            principal=record.principal or "",
            trigger=record.trigger or "",
            agent=record.agent or "",
            model="",
        )
        _add(
            rows,
            replace(
                base,
                runs=record.runs,
                compute_us=_micro(record.compute_seconds),
                session_us=_micro(record.session_seconds),
                tool_calls=record.tool_calls,
            ),
        )
        for model, used in record.usage.items():
            counts = {name: getattr(used, name) for name in _TOKENS}
            _add(rows, replace(base, model=model, **counts))
    return list(rows.values())


def rollup_records(rows: Sequence[CostRollup]) -> list[RunCost]:
    """One RunCost per roll-up group, standing for its `runs` runs, started at its day's
    midnight (UTC)."""
    groups: dict[tuple[str, ...], list[CostRollup]] = {}
    for row in rows:
        groups.setdefault(_group(row), []).append(row)
    records = []
    for key, members in groups.items():
        runs_row = next((m for m in members if m.model == ""), None)
        usage = {
            m.model: TokenCounts(**{name: getattr(m, name) for name in _TOKENS})
            for m in members
            if m.model
        }
        day = datetime.fromisoformat(key[0]).replace(tzinfo=UTC)
        records.append(
            RunCost(
                run_id="rollup:" + ":".join(key),
                name=key[1],
                kind=_KINDS.get(key[2], "job"),
                started_at=day,
                principal=key[3] or None,
                trigger=key[4] or None,
                agent=key[5] or None,
                usage=usage,
                session_seconds=Decimal(runs_row.session_us if runs_row else 0) / MICRO,
                compute_seconds=Decimal(runs_row.compute_us if runs_row else 0) / MICRO,
                tool_calls=runs_row.tool_calls if runs_row else 0,
                runs=runs_row.runs if runs_row else 0,
            )
        )
    return records


def _group(row: CostRollup) -> tuple[str, ...]:
    return (row.day, row.name, row.kind, row.principal, row.trigger, row.agent)


def _add(rows: dict[tuple[str, ...], CostRollup], row: CostRollup) -> None:
    key = (*_group(row), row.model)
    found = rows.get(key)
    if found is None:
        rows[key] = row
        return
    sums = {
        f.name: getattr(found, f.name) + getattr(row, f.name)
        for f in fields(CostRollup)
        if isinstance(getattr(row, f.name), int)
    }
    rows[key] = replace(found, **sums)


def _micro(seconds: Decimal) -> int:
    return int(seconds * MICRO)
