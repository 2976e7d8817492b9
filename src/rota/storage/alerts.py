"""Alerts, mixed into SqlStore: one row per (alert key, sink) with its delivery state, the
watchdog's marks, and the reads the watchdog makes to find what to alert on (rota.alerts).

The key is deterministic (`run-failed:{run id}`, `silence:{schedule}:{fire time}`, ...), and
(key, sink) is unique: any number of workers may find the same condition at once, and the
first insert wins. The delivery runs of the rows it inserted are enqueued in the same
transaction, so an alert that is stored is also on its way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import serialization
from ..model import NewRun
from .dialects import Row
from .runs import RunInserts

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class AlertRecord:
    """One alert for one sink: what happened (`kind`, `subject`, `text`, `detail`) and how
    its delivery went (`state`: pending, delivered or failed; `attempts`, `last_error`)."""

    id: str
    key: str
    sink: str
    kind: str
    subject: str
    text: str
    created_at: float
    detail: Mapping[str, Any] = field(default_factory=dict)
    state: str = PENDING
    attempts: int = 0
    last_error: str | None = None
    delivered_at: float | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class FailedRun:
    id: str
    name: str
    error: Any
    failures: int
    finished_at: float


@dataclass(frozen=True)
class RunChange:
    """A run that started or succeeded (alerts `start` and `success`): when, as whom."""

    id: str
    name: str
    at: float
    principal: str | None
    trigger: str


# The column that says when a run made each change alerts may report.
RUN_CHANGES = {"start": ("started_at", None), "success": ("finished_at", "SUCCEEDED")}


@dataclass(frozen=True)
class OverdueApproval:
    id: str
    run_id: str
    run_name: str
    question: str
    created_at: float


@dataclass(frozen=True)
class ScheduleHealth:
    """Why a schedule may be silent: it is paused, or its newest tick was skipped (why)."""

    paused: bool
    last_skip: str | None


class AlertQueries(RunInserts):
    # -- raising and delivering --------------------------------------------------------

    def raise_alerts(self, alerts: Sequence[tuple[AlertRecord, NewRun | None]]) -> list[str]:
        """Insert each alert unless its (key, sink) exists, and enqueue the delivery runs of
        those inserted, in one transaction; returns the ids inserted."""
        inserted: list[str] = []
        runs: list[NewRun] = []
        with self.tx() as conn:
            for alert, run in alerts:
                rows = conn.execute(
                    """INSERT INTO rota_alerts (id, key, sink, kind, subject, text, detail,
                        created_at, state, attempts, last_error, delivered_at, run_id)
                    VALUES (:id, :key, :sink, :kind, :subject, :text, :detail, :created_at,
                        :state, :attempts, :last_error, :delivered_at, :run_id)
                    ON CONFLICT (key, sink) DO NOTHING RETURNING id""",
                    _params(alert),
                )
                if rows:
                    inserted.append(alert.id)
                    if run is not None:
                        runs.append(run)
            if runs:
                self._insert_runs(conn, runs, lookup=False)
                self.dialect.notify(conn)
        return inserted

    def alert(self, alert_id: str) -> AlertRecord | None:
        rows = self.conn().execute("SELECT * FROM rota_alerts WHERE id = :id", {"id": alert_id})
        return _record(rows[0]) if rows else None

    def alerts(self, *, limit: int = 50, kind: str | None = None) -> list[AlertRecord]:
        """The newest alerts first."""
        where = "WHERE kind = :kind" if kind is not None else ""
        rows = self.conn().execute(
            f"""SELECT * FROM rota_alerts {where}
            ORDER BY created_at DESC, id DESC LIMIT :limit""",
            {"kind": kind, "limit": limit},
        )
        return [_record(r) for r in rows]

    def record_delivery(
        self, alert_id: str, *, state: str, at: float, error: str | None = None
    ) -> None:
        """One delivery attempt: delivered, or failed (`state` pending while retries are
        left, failed after the last)."""
        self.conn().execute(
            """UPDATE rota_alerts SET state = :state, attempts = attempts + 1,
                last_error = :error,
                delivered_at = CASE WHEN :state = 'delivered' THEN :at ELSE delivered_at END
            WHERE id = :id""",
            {"id": alert_id, "state": state, "at": at, "error": error},
        )

    # -- the watchdog's marks ----------------------------------------------------------

    def alert_mark(self, key: str, at: float) -> float:
        """The time stored under `key`, storing `at` first if there is none: the first
        worker to ask sets it, and every worker then reads the same value."""
        with self.tx() as conn:
            conn.execute(
                """INSERT INTO rota_alert_marks (key, at) VALUES (:key, :at)
                ON CONFLICT (key) DO NOTHING""",
                {"key": key, "at": at},
            )
            rows = conn.execute("SELECT at FROM rota_alert_marks WHERE key = :key", {"key": key})
        return float(rows[0]["at"])

    # -- what the watchdog reads -------------------------------------------------------

    def failed_runs(self, since: float, limit: int = 500) -> list[FailedRun]:
        """Runs that ended FAILED (after their last retry) at or after `since`, oldest first."""
        rows = self.conn().execute(
            """SELECT id, name, error, failures, finished_at FROM rota_runs
            WHERE state = 'FAILED' AND finished_at >= :since
            ORDER BY finished_at LIMIT :limit""",
            {"since": since, "limit": limit},
        )
        return [
            FailedRun(
                r["id"],
                r["name"],
                serialization.loads(r["error"]),
                int(r["failures"]),
                float(r["finished_at"]),
            )
            for r in rows
        ]

    def run_changes(
        self, change: str, names: Sequence[str], since: float, limit: int = 500
    ) -> list[RunChange]:
        """Runs of `names` (none: of every job) that made `change` ("start" or "success",
        RUN_CHANGES) at or after `since`, oldest first."""
        column, state = RUN_CHANGES[change]
        d = self.dialect
        where = [f"{column} >= :since"]
        if state is not None:
            where.append("state = :state")
        if names:
            where.append(d.any_of("name", "names"))
        rows = self.conn().execute(
            f"""SELECT id, name, {column} AS at, principal, trigger FROM rota_runs
            WHERE {" AND ".join(where)} ORDER BY {column} LIMIT :limit""",
            {"since": since, "state": state, "names": d.list_param(names), "limit": limit},
        )
        return [
            RunChange(r["id"], r["name"], float(r["at"]), r["principal"], r["trigger"])
            for r in rows
        ]

    def last_succeeded(self, names: Sequence[str]) -> dict[str, float]:
        """When each of `names` last finished a run SUCCEEDED (absent: never)."""
        d = self.dialect
        rows = self.conn().execute(
            f"""SELECT name, MAX(finished_at) AS at FROM rota_runs
            WHERE state = 'SUCCEEDED' AND {d.any_of("name", "names")} GROUP BY name""",
            {"names": d.list_param(names)},
        )
        return {r["name"]: float(r["at"]) for r in rows if r["at"] is not None}

    def overdue_approvals(self, low: float, high: float, limit: int = 500) -> list[OverdueApproval]:
        """Pending approval requests made between `low` and `high`, oldest first."""
        rows = self.conn().execute(
            """SELECT id, run_id, run_name, question, created_at FROM rota_approvals
            WHERE status = 'pending' AND created_at >= :low AND created_at <= :high
            ORDER BY created_at LIMIT :limit""",
            {"low": low, "high": high, "limit": limit},
        )
        return [
            OverdueApproval(
                r["id"], r["run_id"], r["run_name"], r["question"], float(r["created_at"])
            )
            for r in rows
        ]

    def alert_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of `keys` that some alert has (for any sink)."""
        d = self.dialect
        rows = self.conn().execute(
            f"SELECT DISTINCT key FROM rota_alerts WHERE {d.any_of('key', 'keys')}",
            {"keys": d.list_param(sorted(set(keys)))},
        )
        return {r["key"] for r in rows}

    def last_fired(self, schedule: str) -> float | None:
        """The newest fire time of a schedule that ran, or was suppressed by an event (the
        schedule working as told); None: none recorded."""
        rows = self.conn().execute(
            """SELECT last_fire_at FROM rota_ticks
            WHERE schedule = :s AND (outcome = 'enqueued' OR reason = 'suppressed')
            ORDER BY fire_at DESC LIMIT 1""",
            {"s": schedule},
        )
        return float(rows[0]["last_fire_at"]) if rows else None

    def schedule_health(self, schedule: str) -> ScheduleHealth:
        """Whether a schedule is paused, and why its newest tick was skipped, if it was."""
        conn = self.conn()
        newest = conn.execute(
            """SELECT outcome, reason FROM rota_ticks WHERE schedule = :s
            ORDER BY fire_at DESC LIMIT 1""",
            {"s": schedule},
        )
        row = conn.execute("SELECT paused FROM rota_schedules WHERE name = :s", {"s": schedule})
        return ScheduleHealth(
            bool(row and row[0]["paused"]),
            newest[0]["reason"] if newest and newest[0]["outcome"] == "skipped" else None,
        )


def _params(alert: AlertRecord) -> dict[str, Any]:
    return {
        "id": alert.id,
        "key": alert.key,
        "sink": alert.sink,
        "kind": alert.kind,
        "subject": alert.subject,
        "text": alert.text,
        "detail": json.dumps(dict(alert.detail), sort_keys=True, default=str),
        "created_at": alert.created_at,
        "state": alert.state,
        "attempts": alert.attempts,
        "last_error": alert.last_error,
        "delivered_at": alert.delivered_at,
        "run_id": alert.run_id,
    }


def _record(row: Row) -> AlertRecord:
    return AlertRecord(
        id=row["id"],
        key=row["key"],
        sink=row["sink"],
        kind=row["kind"],
        subject=row["subject"],
        text=row["text"],
        created_at=float(row["created_at"]),
        detail=json.loads(row["detail"]),
        state=row["state"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        delivered_at=None if row["delivered_at"] is None else float(row["delivered_at"]),
        run_id=row["run_id"],
    )
