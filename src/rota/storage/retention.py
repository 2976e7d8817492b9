"""Retention queries, mixed into SqlStore (schema v16): find the finished runs a policy lets
go, and delete them with everything they own, in small batches, after keeping what reports
and the audit chain still need.

- **Runs.** A batch of finished runs (and the escalated agent runs folded into them) is
  deleted in one short transaction, together with their steps, waits, approvals, model
  usage, agent sessions, shadow comparisons and budget holds. Before the delete, in the same
  transaction, the caller's `summarize` turns what cost reports read of them into daily
  roll-ups (`rota_cost_rollup`) and the prices their calls were billed at are kept
  (`rota_cost_prices`). A run is deleted and rolled up in one commit, so it is counted once:
  in the detail or in the roll-up, never both and never neither. Pruners take the advisory
  lock `rota_prune` per batch, so two schedulers pruning at once wait for each other; the
  second finds the rows gone and rolls up nothing twice.
- **Never pruned:** a run that is not finished (ENQUEUED, RUNNING, WAITING); a run whose
  escalated agent run is not finished or not old enough; a run with model usage in the
  current UTC month (monthly budgets read spent money from `rota_usage`).
- **Events** older than the cutoff, and older than every unfinished run and open wait (a
  wait looks back for events since it began).
- **Audit records** older than the cutoff, as a prefix of the chain: each batch moves a
  checkpoint (the last pruned record's seq and hash) in `rota_meta` and appends an
  `audit.pruned` record that names it, in one transaction, so `rota audit verify` walks the
  chain from the checkpoint and checks the checkpoint against that record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from ..model import FINISHED_STATES
from .audit import AUDIT_PRUNED, CHECKPOINT_KEY, AuditEntry, AuditQueries, AuditRecord
from .dialects import Connection
from .history import HistoryQueries, RunRow, RunSession, RunUsage

PRUNE_LOCK = "rota_prune"
ESCALATION = "escalation"  # rota.jobs.ESCALATION_TRIGGER (jobs is a layer above storage)
# Tables holding a run's rows, deleted with it (by run_id).
RUN_TABLES = (
    "rota_steps",
    "rota_waits",
    "rota_approvals",
    "rota_usage",
    "rota_agent_sessions",
    "rota_shadow",
    "rota_budget_holds",
)


# Tables of records that only look back, each with what makes a row prunable (`t` is the
# row, `:cutoff` the default retention's cutoff).
RECORD_TABLES = {
    "rota_ticks": """t.fire_at < :cutoff
        AND t.fire_at <> (SELECT MAX(u.fire_at) FROM rota_ticks u WHERE u.schedule = t.schedule)
        AND t.fire_at <> COALESCE((SELECT MAX(u.fire_at) FROM rota_ticks u
            WHERE u.schedule = t.schedule AND (u.outcome = 'enqueued' OR u.reason = 'suppressed')),
            -1)""",
    "rota_rejections": "t.received_at < :cutoff",
    "rota_alerts": "t.created_at < :cutoff AND t.state <> 'pending'",
    "rota_capped_runs": "t.created_at < :cutoff AND COALESCE(t.deferred_to, 0) < :cutoff",
}


@dataclass(frozen=True)
class CostRollup:
    """One row of `rota_cost_rollup`: runs of one day and kind, summed (see schema v16).
    `model` '' is the runs row (runs, compute and session time, tool calls); any other
    model's row holds that model's tokens. '' also stands for no principal/trigger/agent."""

    day: str  # YYYY-MM-DD, UTC, of when the runs started
    name: str
    kind: str  # job | agent | hybrid (rota.cost.records.RunKind)
    principal: str
    trigger: str
    agent: str
    model: str
    runs: int = 0
    compute_us: int = 0
    session_us: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0


_ROLLUP_KEY = ("day", "name", "kind", "principal", "trigger", "agent", "model")
_ROLLUP_SUMS = tuple(f.name for f in fields(CostRollup) if f.name not in _ROLLUP_KEY)


@dataclass(frozen=True)
class RunBatch:
    """What cost reports read of a batch of runs about to be deleted."""

    rows: list[RunRow]
    usage: list[RunUsage]
    sessions: list[RunSession]


Summarize = Callable[[RunBatch], Sequence[CostRollup]]


@dataclass(frozen=True)
class PrunedRuns:
    """What one batch deleted: runs, and rows of their own tables by table."""

    runs: int
    rows: dict[str, int]


class RetentionQueries(AuditQueries, HistoryQueries):
    # -- runs -------------------------------------------------------------------------

    def prunable_runs(
        self,
        cutoff: float,
        *,
        month_start: float,
        names: Sequence[str] | None = None,
        except_names: Sequence[str] = (),
        limit: int = 500,
    ) -> list[str]:
        """Ids of finished runs that ended before `cutoff`, oldest first, each followed by
        the escalated agent runs folded into it; `names` limits them to these run names,
        `except_names` leaves those out. See the module docstring for what is never listed."""
        d = self.dialect
        where, params = self._prunable(cutoff, month_start, names, except_names)
        rows = self.conn().execute(
            f"""SELECT r.id FROM rota_runs r WHERE {where}
            ORDER BY r.finished_at, r.id LIMIT :limit""",
            {**params, "limit": limit},
        )
        ids = [row["id"] for row in rows]
        if not ids:
            return ids
        children = self.conn().execute(
            f"""SELECT id FROM rota_runs
            WHERE {d.any_of("parent_id", "ids")} AND trigger = '{ESCALATION}'""",
            {"ids": d.list_param(ids)},
        )
        return ids + [row["id"] for row in children]

    def count_prunable_runs(
        self,
        cutoff: float,
        *,
        month_start: float,
        names: Sequence[str] | None = None,
        except_names: Sequence[str] = (),
    ) -> int:
        """How many runs prunable_runs would list, page after page: with the escalated
        agent runs that go with them."""
        where, params = self._prunable(cutoff, month_start, names, except_names)
        rows = self.conn().execute(
            f"""SELECT (SELECT COUNT(*) FROM rota_runs r WHERE {where}) AS roots,
                (SELECT COUNT(*) FROM rota_runs c
                 WHERE c.trigger = '{ESCALATION}'
                   AND c.parent_id IN (SELECT r.id FROM rota_runs r WHERE {where})) AS children""",
            params,
        )
        return int(rows[0]["roots"]) + int(rows[0]["children"])

    def _prunable(
        self,
        cutoff: float,
        month_start: float,
        names: Sequence[str] | None,
        except_names: Sequence[str],
    ) -> tuple[str, dict[str, Any]]:
        d = self.dialect
        where = [f"r.state IN ({_states()})", "r.finished_at < :cutoff"]
        params: dict[str, Any] = {"cutoff": cutoff, "month": month_start}
        if names is not None:
            where.append(d.any_of("r.name", "names"))
            params["names"] = d.list_param(names)
        if except_names:
            where.append(f"NOT {d.any_of('r.name', 'except_names')}")
            params["except_names"] = d.list_param(except_names)
        where.append(
            f"""(r.finished_at < :month OR NOT EXISTS (
                    SELECT 1 FROM rota_usage u WHERE u.run_id = r.id))
              AND NOT (r.trigger = '{ESCALATION}' AND r.parent_id IS NOT NULL AND EXISTS (
                    SELECT 1 FROM rota_runs p WHERE p.id = r.parent_id))
              AND NOT EXISTS (
                    SELECT 1 FROM rota_runs c
                    WHERE c.parent_id = r.id AND c.trigger = '{ESCALATION}'
                      AND (c.state NOT IN ({_states()}) OR c.finished_at >= :cutoff
                           OR (c.finished_at >= :month AND EXISTS (
                                SELECT 1 FROM rota_usage cu WHERE cu.run_id = c.id))))"""
        )
        return " AND ".join(where), params

    def prune_runs(self, ids: Sequence[str], summarize: Summarize) -> PrunedRuns:
        """Roll up and delete these runs, those still finished, in one transaction."""
        d = self.dialect
        with self.tx() as conn:
            d.lock(conn, PRUNE_LOCK)
            rows = conn.execute(
                f"""SELECT id FROM rota_runs
                WHERE {d.any_of("id", "ids")} AND state IN ({_states()})
                ORDER BY id {d.row_lock}""",
                {"ids": d.list_param(ids)},
            )
            locked = [row["id"] for row in rows]
            if not locked:
                return PrunedRuns(0, {})
            batch = RunBatch(
                self.run_rows_of(conn, locked),
                self.run_usage_of(conn, locked),
                self.run_sessions_of(conn, locked),
            )
            self._write_rollups(conn, summarize(batch))
            self._keep_prices(conn, locked)
            param = {"ids": d.list_param(locked)}
            deleted = {}
            for table in RUN_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE {d.any_of('run_id', 'ids')}", param)
                deleted[table] = conn.rowcount
            conn.execute(f"DELETE FROM rota_runs WHERE {d.any_of('id', 'ids')}", param)
            return PrunedRuns(conn.rowcount, deleted)

    def _write_rollups(self, conn: Connection, rollups: Sequence[CostRollup]) -> None:
        if not rollups:
            return
        columns = ", ".join((*_ROLLUP_KEY, *_ROLLUP_SUMS))
        values = ", ".join(f":{c}" for c in (*_ROLLUP_KEY, *_ROLLUP_SUMS))
        adds = ", ".join(f"{c} = rota_cost_rollup.{c} + excluded.{c}" for c in _ROLLUP_SUMS)
        conn.execute_many(
            f"""INSERT INTO rota_cost_rollup ({columns}) VALUES ({values})
            ON CONFLICT ({", ".join(_ROLLUP_KEY)}) DO UPDATE SET {adds}""",
            [asdict(r) for r in rollups],
        )

    def _keep_prices(self, conn: Connection, ids: Sequence[str]) -> None:
        rows = conn.execute(
            f"""SELECT model, price, MIN(at) AS first_at FROM rota_usage
            WHERE {self.dialect.any_of("run_id", "ids")} GROUP BY model, price""",
            {"ids": self.dialect.list_param(ids)},
        )
        conn.execute_many(
            """INSERT INTO rota_cost_prices (model, price, day, first_at)
            VALUES (:model, :price, :day, :first_at)
            ON CONFLICT (model, price, day) DO UPDATE SET first_at = CASE
                WHEN excluded.first_at < rota_cost_prices.first_at THEN excluded.first_at
                ELSE rota_cost_prices.first_at END""",
            [{**row, "day": utc_day(float(row["first_at"]))} for row in rows],
        )

    # -- what reports read of pruned runs ---------------------------------------------

    def cost_rollups(self, since: float, until: float) -> list[CostRollup]:
        """Roll-ups of the days that start in [since, until): pruned runs are reported by
        whole UTC days."""
        rows = self.conn().execute(
            """SELECT * FROM rota_cost_rollup WHERE day >= :first AND day < :end
            ORDER BY day, name, kind, principal, trigger, agent, model""",
            {"first": _first_day(since), "end": _first_day(until)},
        )
        return [_rollup(row) for row in rows]

    def pruned_prices(self, since: float, until: float) -> list[tuple[str, str, float]]:
        """(model, price JSON, first use) of the prices pruned calls in the window's days were
        billed at."""
        rows = self.conn().execute(
            """SELECT model, price, MIN(first_at) AS first FROM rota_cost_prices
            WHERE day >= :first AND day < :end GROUP BY model, price""",
            {"first": utc_day(since), "end": _first_day(until)},
        )
        return [(r["model"], r["price"], float(r["first"])) for r in rows]

    # -- events -----------------------------------------------------------------------

    def prune_events(self, cutoff: float, limit: int = 1000) -> int:
        """Delete up to `limit` events stored before `cutoff`, and before every unfinished
        run and open wait (whose look-back may still match them)."""
        with self.tx() as conn:
            rows = conn.execute(
                f"""SELECT MIN(t) AS t FROM (
                    SELECT MIN(created_at) AS t FROM rota_runs
                    WHERE state NOT IN ({_states()})
                    UNION ALL
                    SELECT MIN(since) AS t FROM rota_waits WHERE status = 'waiting'
                ) x"""
            )
            oldest = rows[0]["t"]
            bound = cutoff if oldest is None else min(cutoff, float(oldest))
            conn.execute(
                """DELETE FROM rota_events WHERE id IN (
                    SELECT id FROM rota_events WHERE created_at < :bound
                    ORDER BY created_at LIMIT :limit)""",
                {"bound": bound, "limit": limit},
            )
            return int(conn.rowcount)

    def count_events(self, cutoff: float) -> int:
        rows = self.conn().execute(
            "SELECT COUNT(*) AS n FROM rota_events WHERE created_at < :cutoff", {"cutoff": cutoff}
        )
        return int(rows[0]["n"])

    # -- records that only look back: ticks, refused deliveries, alerts, capped runs -----

    def prune_records(self, table: str, cutoff: float, limit: int = 1000) -> int:
        """Delete up to `limit` rows of one of `RECORD_TABLES` older than `cutoff`, keeping
        what is still read: a schedule's newest tick and its newest tick that fired (the
        silence watchdog and the schedules page read those), an alert not yet delivered, and
        a deferred run's record until its window has come."""
        with self.tx() as conn:
            conn.execute(
                f"""DELETE FROM {table} WHERE id IN (
                    SELECT id FROM {table} t WHERE {RECORD_TABLES[table]}
                    ORDER BY id LIMIT :limit)""",
                {"cutoff": cutoff, "limit": limit},
            )
            return int(conn.rowcount)

    def count_records(self, table: str, cutoff: float) -> int:
        rows = self.conn().execute(
            f"SELECT COUNT(*) AS n FROM {table} t WHERE {RECORD_TABLES[table]}",
            {"cutoff": cutoff},
        )
        return int(rows[0]["n"])

    # -- leaderless turns ---------------------------------------------------------------

    def claim_due(self, key: str, now: float, next_due: float) -> bool:
        """When `key` (in rota_meta) is due, move it to `next_due` and return True; under the
        row's lock, so that of many schedulers exactly one claims each turn."""
        with self.tx() as conn:
            conn.execute(
                """INSERT INTO rota_meta (key, value) VALUES (:key, '0')
                ON CONFLICT (key) DO NOTHING""",
                {"key": key},
            )
            rows = conn.execute(
                f"SELECT value FROM rota_meta WHERE key = :key {self.dialect.row_lock}",
                {"key": key},
            )
            if float(rows[0]["value"]) > now:
                return False
            conn.execute(
                "UPDATE rota_meta SET value = :value WHERE key = :key",
                {"key": key, "value": repr(float(next_due))},
            )
            return True

    # -- the audit chain --------------------------------------------------------------

    def prunable_audit(self, cutoff: float, limit: int = 5000) -> int:
        """How many records, from the start of the chain, are all older than `cutoff`."""
        conn = self.conn()
        start = total = self._checkpoint_seq(conn)
        while True:
            end, _ = self._old_prefix(conn, cutoff, total, total + limit)
            if end == total:
                return total - start
            total = end

    def prune_audit(
        self,
        cutoff: float,
        actor: str,
        detail: dict[str, Any],
        *,
        through: int,
        limit: int = 5000,
    ) -> tuple[int, AuditRecord | None]:
        """Delete up to `limit` records from the start of the chain, all older than
        `cutoff` and none after seq `through` (the head when pruning began: not the records
        pruning writes); move the checkpoint to the last of them and append an
        `audit.pruned` record naming it, in one transaction under the appenders' lock."""
        with self.tx() as conn:
            self.dialect.lock(conn, "rota_audit")
            start = self._checkpoint_seq(conn)
            end, end_hash = self._old_prefix(conn, cutoff, start, min(start + limit, through))
            if end <= start:
                return 0, None
            conn.execute(
                "DELETE FROM rota_audit WHERE seq > :start AND seq <= :end",
                {"start": start, "end": end},
            )
            pruned = int(conn.rowcount)
            entry = AuditEntry(
                actor,
                AUDIT_PRUNED,
                detail={
                    **detail,
                    "audit_records": pruned,
                    "through_seq": end,
                    "through_hash": end_hash,
                },
            )
            record = self.append_audit(conn, [entry])[0]
            value = json.dumps({"seq": end, "hash": end_hash, "record": record.seq})
            conn.execute(
                """INSERT INTO rota_meta (key, value) VALUES (:key, :value)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                {"key": CHECKPOINT_KEY, "value": value},
            )
            return pruned, record

    def _checkpoint_seq(self, conn: Connection) -> int:
        checkpoint = self.read_checkpoint(conn)
        return 0 if checkpoint is None else checkpoint.seq

    def _old_prefix(
        self, conn: Connection, cutoff: float, after: int, upto: int
    ) -> tuple[int, str]:
        """The last seq in (after, upto] before the first record not older than `cutoff`,
        and its hash; (after, '') when there is none. A record may carry its own `at`, so
        the chain need not be in time order: only an unbroken prefix of old ones may go.
        Read by primary key, in seq order: no scan of the whole log."""
        rows = conn.execute(
            """SELECT seq, at, hash FROM rota_audit WHERE seq > :after AND seq <= :upto
            ORDER BY seq""",
            {"after": after, "upto": upto},
        )
        end, end_hash = after, ""
        for row in rows:
            if float(row["at"]) >= cutoff:
                break
            end, end_hash = int(row["seq"]), str(row["hash"])
        return end, end_hash


def _rollup(row: dict[str, Any]) -> CostRollup:
    values: dict[str, Any] = {k: str(row[k]) for k in _ROLLUP_KEY}
    values.update({k: int(row[k]) for k in _ROLLUP_SUMS})  # never a Decimal
    return CostRollup(**values)


def utc_day(at: float) -> str:
    """The UTC date of an epoch time, as YYYY-MM-DD."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def _first_day(at: float) -> str:
    """The first UTC day that starts at or after `at`."""
    moment = datetime.fromtimestamp(at, UTC)
    day = moment.date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if moment > midnight:
        return datetime.fromtimestamp(midnight.timestamp() + 86400, UTC).date().isoformat()
    return day.isoformat()


def _states() -> str:
    return ", ".join(f"'{s}'" for s in FINISHED_STATES)
