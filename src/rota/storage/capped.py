"""Runs held back by a cap when they were enqueued (rota.routines.caps), mixed into SqlStore.

A run over a cap is never silent: a dropped run is stored here only (it never became a run
row, so the queue, the dashboard's run counts and the workers never see it), and a deferred
run is stored here as well as on the queue, due at the start of the next window. A separate
table, not a new run state: a dropped run was never queued, and every reader of the runs
table (claims, leases, counts, retention) would otherwise have to learn to skip it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..clock import iso
from .connection import SqlBase
from .dialects import Row

DROPPED = "dropped"
DEFERRED = "deferred"
CAPS_LOCK = "rota_run_caps"  # held by each transaction that enqueues a capped run


@dataclass(frozen=True)
class CappedRun:
    id: str  # the run's id (a deferred run is on the queue under it)
    name: str
    principal: str | None
    trigger: str
    outcome: str  # dropped | deferred
    reason: str  # which cap, e.g. "per_day 5 used up"
    created_at: float
    deferred_to: float | None = None
    payload: str | None = None


class CappedQueries(SqlBase):
    def record_capped(self, records: Sequence[CappedRun]) -> None:
        """Store the runs a cap dropped or deferred; a record stored before is kept."""
        if not records:
            return
        with self.tx() as conn:
            for r in records:
                conn.execute(
                    """INSERT INTO rota_capped_runs (id, name, principal, trigger, outcome,
                        reason, created_at, deferred_to, payload)
                    VALUES (:id, :name, :principal, :trigger, :outcome, :reason, :created_at,
                        :deferred_to, :payload)
                    ON CONFLICT (id) DO NOTHING""",
                    r.__dict__,
                )

    def lock_caps(self) -> None:
        """Hold the run caps' lock until the current transaction ends (rota.routines.caps)."""
        self.dialect.lock(self.conn(), CAPS_LOCK)

    def capped_runs(
        self,
        names: Sequence[str] = (),
        outcome: str | None = None,
        limit: int = 50,
        *,
        since: float | None = None,
    ) -> list[CappedRun]:
        """Newest first; `since`: recorded at or after it (the alerts watchdog)."""
        d = self.dialect
        where = ["1 = 1"]
        if since is not None:
            where.append("created_at >= :since")
        if names:
            where.append(d.any_of("name", "names"))
        if outcome is not None:
            where.append("outcome = :outcome")
        rows = self.conn().execute(
            f"""SELECT * FROM rota_capped_runs WHERE {" AND ".join(where)}
            ORDER BY created_at DESC, id DESC LIMIT :limit""",
            {"names": d.list_param(names), "outcome": outcome, "limit": limit, "since": since},
        )
        return [_capped(row) for row in rows]

    def count_runs_due(
        self, start: float, end: float, *, name: str | None = None, principal: str | None = None
    ) -> int:
        """Runs of `name` (or acting as `principal`) due to start in [start, end): what a
        cap's window has used, deferred runs counted in the window they were moved to."""
        where = ["run_after >= :start", "run_after < :end"]
        if name is not None:
            where.append("name = :name")
        if principal is not None:
            where.append("principal = :principal")
        rows = self.conn().execute(
            f"SELECT COUNT(*) AS n FROM rota_runs WHERE {' AND '.join(where)}",
            {"start": start, "end": end, "name": name, "principal": principal},
        )
        return int(rows[0]["n"])

    def last_run_created(self, name: str) -> float | None:
        """When the newest run of `name` was enqueued (a cooldown counts from it)."""
        rows = self.conn().execute(
            "SELECT MAX(created_at) AS at FROM rota_runs WHERE name = :name", {"name": name}
        )
        value = rows[0]["at"] if rows else None
        return None if value is None else float(value)


def _capped(row: Row) -> CappedRun:
    return CappedRun(
        id=row["id"],
        name=row["name"],
        principal=row["principal"],
        trigger=row["trigger"],
        outcome=row["outcome"],
        reason=row["reason"],
        created_at=float(row["created_at"]),
        deferred_to=None if row["deferred_to"] is None else float(row["deferred_to"]),
        payload=row["payload"],
    )


def capped_json(r: CappedRun) -> dict[str, object]:
    """A capped run as `rota runs list --dropped --json` shows it."""
    return {
        "id": r.id,
        "name": r.name,
        "principal": r.principal,
        "trigger": r.trigger,
        "outcome": r.outcome,
        "reason": r.reason,
        "at": iso(r.created_at),
        "deferred_to": iso(r.deferred_to),
    }
