"""What a metrics scrape reads from the store, mixed into SqlStore: the runs not yet finished
by job and state, how many queued runs are due and how long the oldest has waited, and the
approvals waiting for a decision. Finished runs are counted by the processes that ran them
(Prometheus counters), so nothing here scans the finished history."""

from __future__ import annotations

from dataclasses import dataclass

from .connection import SqlBase

LIVE_STATES = ("ENQUEUED", "RUNNING", "WAITING")


@dataclass(frozen=True)
class LiveRuns:
    """Runs of one job in one unfinished state; for ENQUEUED, `due` of them may start now
    and `oldest_due` is the earliest `run_after` among those (None: none is due)."""

    name: str
    kind: str
    state: str
    count: int
    due: int = 0
    oldest_due: float | None = None


@dataclass(frozen=True)
class WaitingApprovals:
    count: int
    oldest: float | None  # when the longest-waiting request was made


class GaugeQueries(SqlBase):
    def live_runs(self, now: float) -> list[LiveRuns]:
        """Unfinished runs by job, kind and state, with the due part of the queue."""
        rows = self.conn().execute(
            """SELECT name, kind, state, COUNT(*) AS n,
                SUM(CASE WHEN state = 'ENQUEUED' AND run_after <= :now THEN 1 ELSE 0 END)
                    AS due,
                MIN(CASE WHEN state = 'ENQUEUED' AND run_after <= :now THEN run_after END)
                    AS oldest_due
            FROM rota_runs WHERE state IN ('ENQUEUED', 'RUNNING', 'WAITING')
            GROUP BY name, kind, state""",
            {"now": now},
        )
        return [
            LiveRuns(
                r["name"],
                r["kind"],
                r["state"],
                int(r["n"]),
                int(r["due"] or 0),
                None if r["oldest_due"] is None else float(r["oldest_due"]),
            )
            for r in rows
        ]

    def waiting_approvals(self) -> WaitingApprovals:
        rows = self.conn().execute(
            """SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM rota_approvals
            WHERE status = 'pending'"""
        )
        row = rows[0]
        oldest = row["oldest"]
        return WaitingApprovals(int(row["n"]), None if oldest is None else float(oldest))
