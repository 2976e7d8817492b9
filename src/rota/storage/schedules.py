"""Schedule and tick queries, mixed into SqlStore (one store, one connection handling).

A scheduler pass locks the due schedule rows (SKIP LOCKED on PostgreSQL, the database on
SQLite), lets a Python function decide each one, and writes the ticks, the runs and the new
cursors in the same transaction. Any number of schedulers may run: a row is decided by one
at a time, its cursor moves past every fire time it decided, and tick ids and run
idempotency keys are deterministic and unique, so each (schedule, fire time) is decided once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..model import NewRun, Schedule, Tick, TickPlan
from .dialects import Connection, Dialect, Row
from .runs import RunInserts

ACTIVE_STATES = ("ENQUEUED", "RUNNING", "WAITING")
# decide(schedule, its unfinished runs, when its job last ran for an event) -> plan
Decide = Callable[[Schedule, list[dict[str, Any]], float | None], TickPlan]


class ScheduleQueries(RunInserts):
    def sync_schedules(self, wanted: Sequence[Schedule]) -> list[str]:
        """Create or update schedule rows from code. A schedule whose definition changed
        starts afresh from now (its cursor moves to the new row's cursor): editing a schedule
        and restarting never fires the ticks the old definition would have had. Returns the
        names of schedules created or redefined."""
        changed = []
        with self.tx() as conn:
            existing = {s.name: s for s in self._schedules(conn, [w.name for w in wanted])}
            for row in wanted:
                old = existing.get(row.name)
                if old is None:
                    conn.execute(
                        """INSERT INTO rota_schedules (name, job, definition, description,
                            paused, cursor_at, next_fire_at, created_at, updated_at)
                        VALUES (:name, :job, :definition, :description, 0, :cursor_at,
                            :next_fire_at, :created_at, :updated_at)
                        ON CONFLICT (name) DO NOTHING""",
                        _schedule_params(row),
                    )
                    changed.append(row.name)
                elif old.definition != row.definition:
                    conn.execute(
                        """UPDATE rota_schedules SET job = :job, definition = :definition,
                            description = :description, cursor_at = :cursor_at,
                            next_fire_at = :next_fire_at, updated_at = :updated_at
                        WHERE name = :name""",
                        _schedule_params(row),
                    )
                    changed.append(row.name)
        return changed

    def schedules(self, names: Sequence[str] | None = None) -> list[Schedule]:
        return self._schedules(self.conn(), names)

    def _schedules(self, conn: Connection, names: Sequence[str] | None) -> list[Schedule]:
        where = f"WHERE {self.dialect.any_of('name', 'names')}" if names is not None else ""
        rows = conn.execute(
            f"SELECT * FROM rota_schedules {where} ORDER BY name",
            {"names": self.dialect.list_param(names or [])},
        )
        return [_schedule(row) for row in rows]

    def set_paused(self, name: str, paused: bool, now: float) -> bool:
        """Pause or resume. Resuming makes the schedule due at once, so that the ticks of the
        pause are recorded as skipped (reason "paused") and none of them runs."""
        conn = self.conn()
        conn.execute(
            """UPDATE rota_schedules SET paused = :p, updated_at = :now,
                next_fire_at = CASE WHEN :p = 0 THEN :now ELSE next_fire_at END
            WHERE name = :name""",
            {"p": int(paused), "now": now, "name": name},
        )
        return conn.rowcount == 1

    def next_due(self, names: Sequence[str]) -> float | None:
        rows = self.conn().execute(
            f"""SELECT MIN(next_fire_at) AS due FROM rota_schedules
            WHERE {self.dialect.any_of("name", "names")}""",
            {"names": self.dialect.list_param(names)},
        )
        return rows[0]["due"] if rows else None

    def process_due(
        self,
        names: Sequence[str],
        now: float,
        limit: int,
        decide: Decide,
        watch_overlap: Sequence[str] = (),
        watch_events: Mapping[str, str] | None = None,
        due_by: float | None = None,
    ) -> int:
        """Decide every due schedule among `names` (up to `limit`) in one transaction;
        the unfinished runs of those in `watch_overlap` are handed to `decide`."""
        d = self.dialect
        with self.tx() as conn:
            rows = conn.execute(
                f"""SELECT * FROM rota_schedules
                WHERE next_fire_at <= :now AND {d.any_of("name", "names")}
                ORDER BY next_fire_at, name LIMIT :limit {d.skip_locked}""",
                {"now": max(now, due_by or now), "names": d.list_param(names), "limit": limit},
            )
            if not rows:
                return 0
            due = [_schedule(row) for row in rows]
            watched = set(watch_overlap)
            active = self._active_runs(conn, [s.name for s in due if s.name in watched])
            events = self._last_event_runs(conn, due, watch_events or {})
            plans = [decide(s, active.get(s.name, []), events.get(s.name)) for s in due]
            self._write_plans(conn, plans, now)
        return len(plans)

    def _last_event_runs(
        self, conn: Connection, due: list[Schedule], jobs: Mapping[str, str]
    ) -> dict[str, float]:
        """For schedules that are suppressed after events: when their job last had one."""
        out = {}
        for schedule in due:
            if schedule.name in jobs:
                rows = conn.execute(
                    """SELECT MAX(created_at) AS at FROM rota_runs
                    WHERE name = :job AND trigger IN ('event', 'webhook')""",
                    {"job": jobs[schedule.name]},
                )
                if rows and rows[0]["at"] is not None:
                    out[schedule.name] = float(rows[0]["at"])
        return out

    def _active_runs(self, conn: Connection, names: list[str]) -> dict[str, list[Row]]:
        if not names:
            return {}
        d = self.dialect
        rows = conn.execute(
            f"""SELECT id, trigger_ref, state FROM rota_runs
            WHERE trigger = 'schedule' AND state IN ('ENQUEUED', 'RUNNING', 'WAITING')
              AND {d.any_of("trigger_ref", "names")}
            ORDER BY id""",
            {"names": d.list_param(names)},
        )
        out: dict[str, list[Row]] = {}
        for row in rows:
            out.setdefault(row["trigger_ref"], []).append(row)
        return out

    def _write_plans(self, conn: Connection, plans: list[TickPlan], now: float) -> None:
        runs = [run for plan in plans for run in plan.runs]
        if runs:
            self._insert_runs(conn, runs, lookup=False)  # tick ids are their keys: no lookup
        ticks = [tick for plan in plans for tick in plan.ticks]
        _insert_ticks(self.dialect, conn, ticks)
        self.dialect.update_many(
            conn,
            "rota_schedules",
            "name",
            {"name": "text", "cursor_at": "float8", "next_fire_at": "float8"},
            [
                {"name": p.schedule, "cursor_at": p.cursor_at, "next_fire_at": p.next_fire_at}
                for p in plans
            ],
        )
        cancel = sorted(run_id for plan in plans for run_id in plan.cancel_run_ids)
        if cancel:
            self._cancel_for_overlap(conn, cancel, now)
        if runs:
            self.dialect.notify(conn)

    def _cancel_for_overlap(self, conn: Connection, run_ids: list[str], now: float) -> None:
        d = self.dialect
        params = {"ids": d.list_param(run_ids), "now": now}
        conn.execute(
            f"""UPDATE rota_runs SET state = 'CANCELLED', finished_at = :now,
                cancel_requested = 1
            WHERE state IN ('ENQUEUED', 'WAITING') AND {d.any_of("id", "ids")}""",
            params,
        )
        conn.execute(
            f"""UPDATE rota_runs SET cancel_requested = 1
            WHERE state = 'RUNNING' AND {d.any_of("id", "ids")}""",
            params,
        )
        conn.execute(  # open waits belong to WAITING runs, cancelled above: end them too
            f"""UPDATE rota_waits SET status = 'cancelled', resolved_at = :now
            WHERE status = :open AND {d.any_of("run_id", "ids")}""",
            {**params, "open": "waiting"},
        )

    def record_ticks(self, runs: Sequence[NewRun], ticks: Sequence[Tick]) -> int:
        """Backfill: enqueue runs with their tick records; returns how many runs are new."""
        with self.tx() as conn:
            created = self._insert_runs(conn, runs)
            _insert_ticks(self.dialect, conn, ticks)
            if any(c for _, c in created):
                self.dialect.notify(conn)
        return sum(1 for _, c in created if c)

    def ticks(
        self,
        schedule: str | None = None,
        *,
        outcome: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Tick]:
        """Newest fire time first; `before` (fire_at, id) is where a previous page ended."""
        where = ["1 = 1"]
        params: dict[str, Any] = {"limit": limit, "schedule": schedule, "outcome": outcome}
        if schedule:
            where.append("schedule = :schedule")
        if outcome:
            where.append("outcome = :outcome")
        if before is not None:
            where.append("(fire_at < :at OR (fire_at = :at AND id < :id))")
            params.update(at=before[0], id=before[1])
        rows = self.conn().execute(
            f"""SELECT * FROM rota_ticks WHERE {" AND ".join(where)}
            ORDER BY fire_at DESC, id DESC LIMIT :limit""",
            params,
        )
        return [Tick(**row) for row in rows]

    def keyed_runs(self, job: str, keys: Sequence[str]) -> dict[str, str]:
        """{idempotency key: run id} of `job`'s runs with one of `keys` (a backfill's preview:
        which fire times already have a run)."""
        d = self.dialect
        rows = self.conn().execute(
            f"""SELECT id, idempotency_key FROM rota_runs
            WHERE name = :name AND {d.any_of("idempotency_key", "keys")}""",
            {"name": job, "keys": d.list_param(list(keys))},
        )
        return {r["idempotency_key"]: r["id"] for r in rows}


def _schedule(row: Row) -> Schedule:
    return Schedule(**{**row, "paused": bool(row["paused"])})


def _schedule_params(s: Schedule) -> dict[str, Any]:
    return {name: getattr(s, name) for name in Schedule.__slots__ if name != "paused"}


_TICK_COLUMNS = {
    "id": "text",
    "schedule": "text",
    "fire_at": "float8",
    "last_fire_at": "float8",
    "ticks": "int",
    "outcome": "text",
    "reason": "text",
    "run_id": "text",
    "decided_at": "float8",
    "decided_by": "text",
}


def _insert_ticks(dialect: Dialect, conn: Connection, ticks: Sequence[Tick]) -> None:
    # ON CONFLICT: a tick id is decided once; a second decision for it changes nothing.
    dialect.insert_many(
        conn,
        "rota_ticks",
        _TICK_COLUMNS,
        [_tick_params(t) for t in ticks],
        suffix="ON CONFLICT (id) DO NOTHING",
    )


def _tick_params(t: Tick) -> dict[str, Any]:
    return {name: getattr(t, name) for name in Tick.__slots__}
