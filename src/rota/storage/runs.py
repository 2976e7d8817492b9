"""The run queue, mixed into SqlStore: enqueueing (jobs, events, debounces), claims and
leases, completions, steps, and reading and acting on runs and events.

`RunInserts` holds the one batched insert of new runs; the queries that make runs in their
own transactions (enqueue and events here, schedules, approval announcements) inherit it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import serialization
from ..errors import EventNotFound, InvalidStateError, RunNotFound
from ..model import (
    Completion,
    Debounced,
    Event,
    Execution,
    ModelCall,
    NewRun,
    Rejection,
    Run,
    RunFilter,
    RunState,
    Step,
    StepRecord,
)
from .audit import AuditEntry, AuditQueries
from .connection import SqlBase
from .dialects import Connection, Row
from .usage import UsageQueries
from .waits import WaitQueries

# Columns of a new run with their PostgreSQL types (for batched inserts over arrays).
_RUN_COLUMNS = {
    "id": "text",
    "name": "text",
    "kind": "text",
    "payload": "text",
    "priority": "int",
    "max_attempts": "int",
    "idempotency_key": "text",
    "concurrency_key": "text",
    "concurrency_limit": "int",
    "principal": "text",
    "trigger": "text",
    "trigger_ref": "text",
    "parent_id": "text",
    "run_after": "float8",
    "created_at": "float8",
    "timeout_s": "float8",
    "trace_context": "text",
}
_run_values = operator.attrgetter(*_RUN_COLUMNS)  # a new run's values, in column order
_COPY_COLUMNS = (*_RUN_COLUMNS, "state")
_ON_RUN_CONFLICT = (
    "ON CONFLICT (name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)
# Lookups by id compare the state to a parameter, not a literal: with a literal, PostgreSQL's
# generic plan for these prepared statements prefers the partial index on RUNNING rows over
# the primary key, and that index fills with dead entries during a drain (quadratic time).
_SAVE_STEP = """
    INSERT INTO rota_steps (run_id, step_key, seq, name, state, attempts, input_hash,
        result, error, started_at, finished_at, lease_token)
    SELECT :run_id, :key, :seq, :name, :state, :attempts, :input_hash, :result, :error,
        :started_at, :finished_at, :lease_token
    WHERE EXISTS (SELECT 1 FROM rota_runs WHERE id = :run_id
                  AND lease_token = :lease_token AND state = :running {share})
    ON CONFLICT (run_id, step_key) DO UPDATE SET state = excluded.state,
        attempts = rota_steps.attempts + excluded.attempts, result = excluded.result,
        error = excluded.error, finished_at = excluded.finished_at,
        lease_token = excluded.lease_token, input_hash = excluded.input_hash
    WHERE rota_steps.state <> 'SUCCEEDED'"""
# Compute time: an execution is added once (compute_token: the newest lease counted). One
# that ended with its run's outcome is added by the completion, which the lease fences.
_ADD_COMPUTE = """compute_s = CASE WHEN {seconds} IS NULL
        OR COALESCE({r}compute_token, -1) >= {r}lease_token THEN {r}compute_s
        ELSE COALESCE({r}compute_s, 0) + {seconds} END,
    compute_token = CASE WHEN {seconds} IS NULL
        OR COALESCE({r}compute_token, -1) >= {r}lease_token THEN {r}compute_token
        ELSE {r}lease_token END"""
# Executions that ended without an outcome to record (parked on a wait, interrupted): by
# run, the first and newest lease of those in the batch and their summed time.
_ADD_EXECUTIONS = """UPDATE rota_runs SET compute_s = COALESCE(compute_s, 0) + :seconds,
        compute_token = :last_token
    WHERE id = :run_id AND COALESCE(compute_token, -1) < :first_token"""
# Measurements that cost reports read (storage/history.py), not part of a Run.
_MEASURED = ("compute_s", "compute_token")
# started_at is when the run is due to start if it was claimed ahead of its time.
_LEASE = """state = 'RUNNING', lease_owner = :owner, lease_token = lease_token + 1,
    lease_expires_at = :expires, attempt = attempt + 1,
    started_at = COALESCE(started_at, CASE WHEN run_after > :now THEN run_after ELSE :now END)"""


class RunInserts(SqlBase):
    """Inserting new runs, for every query mixin that makes runs inside its transaction."""

    def _insert_runs(
        self, conn: Connection, runs: Sequence[NewRun], *, lookup: bool = True
    ) -> list[tuple[str, bool]]:
        """Insert in one batched statement. A run whose idempotency key exists is not
        inserted; with `lookup`, one more query finds the ids of those that existed."""
        keyed = [r for r in runs if r.idempotency_key is not None]
        if not keyed:  # nothing can conflict: a plain bulk load, tuples straight from the runs
            self.dialect.copy_rows(
                conn, "rota_runs", _COPY_COLUMNS, [(*_run_values(r), "ENQUEUED") for r in runs]
            )
            return [(run.id, True) for run in runs]
        self.dialect.insert_many(
            conn,
            "rota_runs",
            _RUN_COLUMNS,
            [_params(r) for r in runs],
            fixed="state='ENQUEUED'",
            suffix=_ON_RUN_CONFLICT,
        )
        if not lookup:
            return [(run.id, True) for run in runs]
        d = self.dialect
        rows = conn.execute(
            f"""SELECT id, name, idempotency_key FROM rota_runs
            WHERE {d.any_of("idempotency_key", "keys")} AND {d.any_of("name", "names")}""",
            {
                "keys": d.list_param(sorted({str(r.idempotency_key) for r in keyed})),
                "names": d.list_param(sorted({r.name for r in keyed})),
            },
        )
        stored = {(r["name"], r["idempotency_key"]): r["id"] for r in rows}
        out = []
        for run in runs:
            run_id = (
                run.id if run.idempotency_key is None else stored[(run.name, run.idempotency_key)]
            )
            out.append((run_id, run_id == run.id))
        return out


class RunQueries(RunInserts, WaitQueries, AuditQueries, UsageQueries):
    """The run queue. Events wake the runs waiting for them and a cancel closes a run's
    waits (WaitQueries); a model step's metering commits with its checkpoint (UsageQueries);
    a worker's run.started records commit with its completions (AuditQueries)."""

    # -- enqueue -----------------------------------------------------------------------

    def enqueue(self, runs: Sequence[NewRun]) -> list[tuple[str, bool]]:
        with self.tx() as conn:
            out = self._insert_runs(conn, runs)
            if any(created for _, created in out):
                self.dialect.notify(conn)
        return out

    def record_event(
        self, event: Event, runs: Sequence[NewRun], debounced: Sequence[Debounced] = ()
    ) -> tuple[str, bool, list[str]]:
        with self.tx() as conn:
            inserted = conn.execute(
                """INSERT INTO rota_events (id, name, payload, idempotency_key, source, created_at)
                VALUES (:id, :name, :payload, :idempotency_key, :source, :created_at)
                ON CONFLICT (name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING id""",
                {**_params(event), "payload": serialization.dumps(event.payload, what="payload")},
            )
            if not inserted:
                existing = conn.execute(
                    "SELECT id FROM rota_events WHERE name = :name AND idempotency_key = :key",
                    {"name": event.name, "key": event.idempotency_key},
                )
                return existing[0]["id"], False, []
            run_ids = [run_id for run_id, _ in self._insert_runs(conn, runs)]
            run_ids += [self._debounce(conn, d, event) for d in debounced]
            if run_ids:
                self.dialect.notify(conn)
            self._wake_for_event(conn, event)  # parked runs waiting for it: queued again
        return event.id, True, run_ids

    def _debounce(self, conn: Connection, d: Debounced, event: Event) -> str:
        """Push the job's waiting debounced run back, or start one; returns its id."""
        self.dialect.lock(conn, f"rota_debounce:{d.run.name}")
        now = event.created_at
        waiting = conn.execute(
            f"""SELECT id, created_at FROM rota_runs
            WHERE name = :name AND state = 'ENQUEUED' AND idempotency_key LIKE 'debounce:%'
            ORDER BY created_at DESC LIMIT 1 {self.dialect.row_lock}""",
            {"name": d.run.name},
        )
        first = waiting[0]["created_at"] if waiting else now
        due = now + d.quiet_s
        if d.max_wait_s is not None:
            due = min(due, first + d.max_wait_s)
        if waiting:
            conn.execute(
                """UPDATE rota_runs SET run_after = :due, payload = :payload,
                    trigger_ref = :event WHERE id = :id""",
                {"due": due, "payload": d.run.payload, "event": event.id, "id": waiting[0]["id"]},
            )
            return str(waiting[0]["id"])
        self._insert_runs(
            conn, [replace(d.run, run_after=due, idempotency_key=f"debounce:{event.id}")]
        )
        return d.run.id

    # -- claims and leases -------------------------------------------------------------

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
        """Lease ready runs; `due_by` (later than now) also takes runs due by then, which
        the worker holds until their time (so that claiming is not on their critical path);
        `ahead` takes only those (not with `limited`)."""
        if limit <= 0 or not names:
            return []
        params = {
            "owner": owner,
            "names": self.dialect.list_param(names),
            "limit": limit,
            "now": now,
            "due": max(now, due_by or now),
            "expires": max(now, due_by or now) + lease_s,
        }
        if self.dialect.probe_before_claim and not self._anything_ready(params, limited, ahead):
            return []
        with self.tx() as conn:
            if limited:
                self.dialect.lock(conn, "rota_limited_claim")
                ids = [r["id"] for r in conn.execute(self._limited_candidates(), params)]
                if not ids:
                    return []
                params["ids"] = self.dialect.list_param(ids)
                rows = conn.execute(
                    f"UPDATE rota_runs SET {_LEASE} WHERE {self.dialect.any_of('id', 'ids')} "
                    "RETURNING *",
                    params,
                )
            else:
                rows = conn.execute(self._claim_sql(ahead), params)
        runs = [_run(row) for row in rows]
        runs.sort(key=lambda r: (-r.priority, r.run_after, r.id))
        return runs

    def _anything_ready(self, params: dict[str, Any], limited: bool, ahead: bool) -> bool:
        """A read before the write transaction: an idle SQLite worker would otherwise take
        the database's one write lock at every poll."""
        keyed = "IS NOT NULL" if limited else "IS NULL"
        later = "AND run_after > :now" if ahead else ""
        rows = self.conn().execute(
            f"""SELECT 1 FROM rota_runs WHERE state = 'ENQUEUED' AND run_after <= :due {later}
            AND concurrency_key {keyed} AND {self.dialect.any_of("name", "names")} LIMIT 1""",
            params,
        )
        return bool(rows)

    def _claim_sql(self, ahead: bool = False) -> str:
        d = self.dialect
        later = "AND run_after > :now" if ahead else ""
        return f"""
            UPDATE rota_runs SET {_LEASE}
            WHERE id IN (
                SELECT id FROM rota_runs
                WHERE state = 'ENQUEUED' AND run_after <= :due {later} AND concurrency_key IS NULL
                  AND {d.any_of("name", "names")}
                ORDER BY priority DESC, run_after, id
                LIMIT :limit {d.skip_locked})
            RETURNING *"""

    def _limited_candidates(self) -> str:
        # Runs sharing a concurrency key may take only the slots their key has left:
        # rank the ready ones per key and keep those that fit beside the running ones.
        return f"""
            WITH running AS (
                SELECT concurrency_key, COUNT(*) AS n FROM rota_runs
                WHERE state = 'RUNNING' AND concurrency_key IS NOT NULL
                GROUP BY concurrency_key),
            ranked AS (
                SELECT r.id, r.priority, r.run_after, r.concurrency_limit,
                       COALESCE(running.n, 0) AS busy,
                       ROW_NUMBER() OVER (PARTITION BY r.concurrency_key
                                          ORDER BY r.priority DESC, r.run_after, r.id) AS rank
                FROM rota_runs r LEFT JOIN running ON running.concurrency_key = r.concurrency_key
                WHERE r.state = 'ENQUEUED' AND r.run_after <= :due
                  AND r.concurrency_key IS NOT NULL AND {self.dialect.any_of("r.name", "names")})
            SELECT id FROM ranked WHERE busy + rank <= concurrency_limit
            ORDER BY priority DESC, run_after, id LIMIT :limit"""

    def next_run_due(self, names: Sequence[str]) -> float | None:
        """When the earliest queued run of these jobs is due (None: nothing queued)."""
        rows = self.conn().execute(
            f"""SELECT MIN(run_after) AS due FROM rota_runs
            WHERE state = 'ENQUEUED' AND {self.dialect.any_of("name", "names")}""",
            {"names": self.dialect.list_param(names)},
        )
        return rows[0]["due"] if rows else None

    def heartbeat(
        self, owner: str, run_ids: Sequence[str], now: float, lease_s: float
    ) -> list[tuple[str, int, bool]]:
        if not run_ids:
            return []
        # Rows are locked in id order everywhere a worker updates several at once
        # (heartbeat, completions, release), so that those writers cannot deadlock.
        rows = self.conn().execute(
            f"""UPDATE rota_runs SET lease_expires_at = :expires
            WHERE id IN (SELECT id FROM rota_runs WHERE lease_owner = :owner
                         AND state = :running AND {self.dialect.any_of("id", "ids")}
                         ORDER BY id {self.dialect.row_lock})
            RETURNING id, lease_token, cancel_requested""",
            {
                "owner": owner,
                "expires": now + lease_s,
                "running": "RUNNING",
                "ids": self.dialect.list_param(run_ids),
            },
        )
        return [(r["id"], r["lease_token"], bool(r["cancel_requested"])) for r in rows]

    def reap_expired(self, now: float, max_reclaims: int) -> int:
        error = serialization.dumps(
            {
                "type": "LeaseExpired",
                "message": f"the run's worker stopped responding {max_reclaims} times "
                "(killed or crashed); not retried again",
            },
            what="error",
        )
        # SKIP LOCKED: a row locked right now is being completed or heartbeated by its owner.
        expired = f"""id IN (SELECT id FROM rota_runs WHERE state = 'RUNNING'
            AND lease_expires_at < :now ORDER BY id {self.dialect.skip_locked})"""
        with self.tx() as conn:
            failed = conn.execute(
                f"""UPDATE rota_runs SET state = 'FAILED', error = :error, finished_at = :now,
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE {expired} AND reclaims + 1 >= :max RETURNING id""",
                {"now": now, "max": max_reclaims, "error": error},
            )
            requeued = conn.execute(
                f"""UPDATE rota_runs SET state = 'ENQUEUED', lease_owner = NULL,
                    lease_expires_at = NULL, run_after = :now, reclaims = reclaims + 1
                WHERE {expired} RETURNING id""",
                {"now": now},
            )
            if requeued:
                self.dialect.notify(conn)
        return len(failed) + len(requeued)

    def complete(
        self,
        completions: Sequence[Completion],
        executions: Sequence[Execution] = (),
        *,
        audit: Sequence[AuditEntry] = (),
    ) -> int:
        ordered = sorted(completions, key=lambda c: c.run_id)  # lock order: by id
        timed = {(e.run_id, e.lease_token): max(0.0, e.seconds) for e in executions}
        # An execution that ended with its run's outcome is added by that outcome's update.
        compute = [timed.pop((c.run_id, c.lease_token), None) for c in ordered]
        alone = _by_run(timed)
        if not ordered and not alone:
            if audit:
                self.audit_many(audit)
            return 0
        with self.tx() as conn:
            # The audit records go last: like every change audited in its own transaction,
            # the rows are locked before the chain's head (one lock order, no deadlocks).
            done = self._complete_in(conn, ordered, compute, alone)
            if audit:
                self.append_audit(conn, audit)
        return done

    def _complete_in(
        self,
        conn: Connection,
        ordered: list[Completion],
        compute: list[float | None],
        alone: list[dict[str, Any]],
    ) -> int:
        # Executions first: a completion of a newer lease would make them look counted.
        if self.dialect.arrays:
            done = self._complete_with_arrays(conn, ordered, compute, alone)
        else:
            conn.execute_many(_ADD_EXECUTIONS, alone)
            done = conn.execute_many(
                f"""UPDATE rota_runs SET state = :state, result = :result, error = :error,
                    finished_at = :finished_at, failures = :failures,
                    run_after = COALESCE(:run_after, run_after),
                    {_ADD_COMPUTE.format(seconds=":compute", r="")},
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE id = :run_id AND lease_token = :lease_token AND state = :running""",
                [
                    {**_params(c), "state": c.state.value, "running": "RUNNING", "compute": s}
                    for c, s in zip(ordered, compute, strict=True)
                ],
            )
        if any(c.state == RunState.ENQUEUED for c in ordered):
            self.dialect.notify(conn)
        return done

    def _complete_with_arrays(
        self,
        conn: Connection,
        ordered: list[Completion],
        compute: list[float | None],
        alone: list[dict[str, Any]],
    ) -> int:
        # One statement for the whole batch: far less server work than one UPDATE per run.
        ids = [c.run_id for c in ordered]
        conn.execute(
            f"SELECT id FROM rota_runs WHERE id = ANY(:ids) ORDER BY id {self.dialect.row_lock}",
            {"ids": sorted({*ids, *(e["run_id"] for e in alone)})},
        )
        if alone:
            conn.execute(
                """UPDATE rota_runs AS r SET compute_s = COALESCE(r.compute_s, 0) + e.seconds,
                    compute_token = e.last_token
                FROM unnest(:ids::text[], :firsts::int[], :lasts::int[], :seconds::float8[])
                    AS e(id, first_token, last_token, seconds)
                WHERE r.id = e.id AND COALESCE(r.compute_token, -1) < e.first_token""",
                {
                    "ids": [e["run_id"] for e in alone],
                    "firsts": [e["first_token"] for e in alone],
                    "lasts": [e["last_token"] for e in alone],
                    "seconds": [e["seconds"] for e in alone],
                },
            )
        if not ordered:
            return 0
        conn.execute(
            f"""UPDATE rota_runs AS r SET state = c.state, result = c.result, error = c.error,
                finished_at = c.finished_at, failures = c.failures,
                run_after = COALESCE(c.run_after, r.run_after),
                {_ADD_COMPUTE.format(seconds="c.compute", r="r.")},
                lease_owner = NULL, lease_expires_at = NULL
            FROM unnest(:ids::text[], :tokens::int[], :states::text[], :results::text[],
                        :errors::text[], :finished::float8[], :failures::int[],
                        :run_afters::float8[], :compute::float8[])
                AS c(id, lease_token, state, result, error, finished_at, failures, run_after,
                     compute)
            WHERE r.id = c.id AND r.lease_token = c.lease_token AND r.state = :running""",
            {
                "ids": ids,
                "tokens": [c.lease_token for c in ordered],
                "states": [c.state.value for c in ordered],
                "results": [c.result for c in ordered],
                "errors": [c.error for c in ordered],
                "finished": [c.finished_at for c in ordered],
                "failures": [c.failures for c in ordered],
                "run_afters": [c.run_after for c in ordered],
                "compute": compute,
                "running": "RUNNING",
            },
        )
        return conn.rowcount

    def release(self, owner: str, run_ids: Sequence[str], now: float) -> int:
        if not run_ids:
            return 0
        with self.tx() as conn:
            conn.execute(
                f"""UPDATE rota_runs SET state = 'ENQUEUED', lease_owner = NULL,
                    lease_expires_at = NULL, run_after = :now
                WHERE id IN (SELECT id FROM rota_runs WHERE lease_owner = :owner
                    AND state = 'RUNNING' AND {self.dialect.any_of("id", "ids")}
                    ORDER BY id {self.dialect.row_lock})""",
                {"owner": owner, "now": now, "ids": self.dialect.list_param(run_ids)},
            )
            released = conn.rowcount
            self.dialect.notify(conn)
        return released

    # -- steps -------------------------------------------------------------------------

    def save_step(self, record: StepRecord, model_calls: Sequence[ModelCall] = ()) -> bool:
        # The EXISTS guard fences out a worker that lost its lease; a step that already
        # succeeded is never overwritten. A model step's metering commits with its
        # checkpoint: no extra transaction per call, and no usage without its step.
        params = {**_params(record), "running": "RUNNING"}
        sql = _SAVE_STEP.format(share=self.dialect.share_lock)
        if not model_calls:
            conn = self.conn()
            conn.execute(sql, params)
            return conn.rowcount == 1
        with self.tx() as conn:
            conn.execute(sql, params)
            saved = conn.rowcount == 1
            for call in model_calls if saved else ():
                self.write_model_call(conn, call)
        return saved

    def save_steps(self, items: Sequence[tuple[StepRecord, Sequence[ModelCall]]]) -> list[bool]:
        # One commit for many runs' checkpoints. Run rows are share-locked in id order, as
        # every writer of several runs locks them (see heartbeat), so that none deadlock.
        sql = _SAVE_STEP.format(share=self.dialect.share_lock)
        order = sorted(range(len(items)), key=lambda i: items[i][0].run_id)
        saved = [False] * len(items)
        with self.tx() as conn:
            for i in order:
                record, model_calls = items[i]
                conn.execute(sql, {**_params(record), "running": "RUNNING"})
                saved[i] = conn.rowcount == 1
                for call in model_calls if saved[i] else ():
                    self.write_model_call(conn, call)
        return saved

    def steps(self, run_id: str) -> list[Step]:
        rows = self.conn().execute(
            "SELECT * FROM rota_steps WHERE run_id = :id ORDER BY seq, started_at",
            {"id": run_id},
        )
        return [_step(row) for row in rows]

    def steps_page(self, run_id: str, after_seq: int, limit: int) -> list[Step]:
        """At most `limit` steps of a run with seq above `after_seq`, in order: a long run's
        steps a page at a time (the dashboard's run page)."""
        rows = self.conn().execute(
            """SELECT * FROM rota_steps WHERE run_id = :id AND seq > :after
            ORDER BY seq, started_at LIMIT :limit""",
            {"id": run_id, "after": after_seq, "limit": limit},
        )
        return [_step(row) for row in rows]

    # -- reading and operator actions --------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        rows = self.conn().execute("SELECT * FROM rota_runs WHERE id = :id", {"id": run_id})
        if not rows:
            raise RunNotFound(run_id)
        return _run(rows[0])

    def child_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Runs made by these runs (escalations, shadow runs), oldest first."""
        if not run_ids:
            return []
        rows = self.conn().execute(
            f"""SELECT * FROM rota_runs WHERE {self.dialect.any_of("parent_id", "ids")}
            ORDER BY created_at, id""",
            {"ids": self.dialect.list_param(list(run_ids))},
        )
        return [_run(row) for row in rows]

    def list_runs(self, flt: RunFilter) -> list[Run]:
        d = self.dialect
        where: list[str] = ["1 = 1"]
        params: dict[str, Any] = {"limit": flt.limit}
        if flt.states:
            where.append(d.any_of("state", "states"))
            params["states"] = d.list_param(flt.states)
        if flt.names:
            where.append(d.any_of("name", "names"))
            params["names"] = d.list_param(flt.names)
        if flt.before_id:
            where.append("id < :before")
            params["before"] = flt.before_id
        for column, values in (
            ("kind", flt.kinds),
            ("principal", flt.principals),
            ("trigger", flt.triggers),
        ):
            if values:
                where.append(d.any_of(column, f"{column}s"))
                params[f"{column}s"] = d.list_param(values)
        if flt.since is not None:
            where.append("created_at >= :since")
            params["since"] = flt.since
        if flt.until is not None:
            where.append("created_at < :until")
            params["until"] = flt.until
        if flt.error_text:
            # LIKE with our own escape character, so that % and _ in the text match themselves.
            # On PostgreSQL the trigram index of schema 14 is on exactly LOWER(error).
            escaped = re.sub(r"([\\%_])", r"\\\1", flt.error_text.lower())
            where.append("LOWER(error) LIKE :error_text ESCAPE '\\'")
            params["error_text"] = f"%{escaped}%"
        rows = self.conn().execute(
            f"SELECT * FROM rota_runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit",
            params,
        )
        return [_run(row) for row in rows]

    def runs_changed(self, since: float, limit: int) -> list[Run]:
        # One indexed range read per timestamp (an OR of the three would scan the table).
        found: dict[str, Run] = {}
        for column in ("created_at", "started_at", "finished_at"):
            rows = self.conn().execute(
                f"""SELECT * FROM rota_runs WHERE {column} >= :since
                ORDER BY {column} LIMIT :limit""",
                {"since": since, "limit": limit},
            )
            found.update((row["id"], _run(row)) for row in rows)
        return list(found.values())

    def count_states(self, names: Sequence[str] = ()) -> dict[str, int]:
        d = self.dialect
        where = f"WHERE {d.any_of('name', 'names')}" if names else ""
        rows = self.conn().execute(
            f"SELECT state, COUNT(*) AS n FROM rota_runs {where} GROUP BY state",
            {"names": d.list_param(names)} if names else {},
        )
        return {row["state"]: int(row["n"]) for row in rows}

    def cancel(self, run_id: str, now: float) -> Run:
        with self.tx() as conn:
            run = self._locked_run(conn, run_id)
            if run.state.finished:
                raise InvalidStateError(
                    f"run {run_id} already ended {run.state}; nothing to cancel"
                )
            if run.state == RunState.RUNNING:
                conn.execute(
                    "UPDATE rota_runs SET cancel_requested = 1 WHERE id = :id", {"id": run_id}
                )
            else:
                conn.execute(
                    """UPDATE rota_runs SET state = 'CANCELLED', finished_at = :now,
                    cancel_requested = 1 WHERE id = :id""",
                    {"id": run_id, "now": now},
                )
                if run.state == RunState.WAITING:
                    self._close_waits(conn, [run_id], now)
        return self.get_run(run_id)

    def retry(self, run_id: str, now: float) -> Run:
        with self.tx() as conn:
            run = self._locked_run(conn, run_id)
            if run.state not in (RunState.FAILED, RunState.CANCELLED):
                raise InvalidStateError(
                    f"run {run_id} is {run.state}; only FAILED or CANCELLED runs can be retried"
                )
            conn.execute(
                """UPDATE rota_runs SET state = 'ENQUEUED', run_after = :now, failures = 0,
                    reclaims = 0, cancel_requested = 0, error = NULL, finished_at = NULL
                WHERE id = :id""",
                {"id": run_id, "now": now},
            )
            self.dialect.notify(conn)
        return self.get_run(run_id)

    def _locked_run(self, conn: Connection, run_id: str) -> Run:
        lock = " FOR UPDATE" if self.dialect.skip_locked else ""
        rows = conn.execute(f"SELECT * FROM rota_runs WHERE id = :id{lock}", {"id": run_id})
        if not rows:
            raise RunNotFound(run_id)
        return _run(rows[0])

    def record_rejection(self, rejection: Rejection) -> None:
        self.conn().execute(
            """INSERT INTO rota_rejections (id, hook, status, reason, message, delivery_id,
                body_bytes, received_at)
            VALUES (:id, :hook, :status, :reason, :message, :delivery_id, :body_bytes,
                :received_at)""",
            _params(rejection),
        )

    def rejections(self, hook: str | None = None, limit: int = 50) -> list[Rejection]:
        where = "WHERE hook = :hook" if hook else ""
        rows = self.conn().execute(
            f"SELECT * FROM rota_rejections {where} ORDER BY id DESC LIMIT :limit",
            {"hook": hook, "limit": limit},
        )
        return [Rejection(**row) for row in rows]

    def get_event(self, event_id: str) -> Event:
        rows = self.conn().execute("SELECT * FROM rota_events WHERE id = :id", {"id": event_id})
        if not rows:
            raise EventNotFound(event_id)
        return _event(rows[0])

    def events(
        self, name: str | None = None, limit: int = 50, before_id: str | None = None
    ) -> list[Event]:
        """Newest first; `before_id` is the keyset cursor (events older than that one)."""
        where = ["1 = 1"]
        if name:
            where.append("name = :name")
        if before_id:
            where.append("id < :before")
        rows = self.conn().execute(
            f"SELECT * FROM rota_events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit",
            {"name": name, "limit": limit, "before": before_id},
        )
        return [_event(row) for row in rows]


def _params(record: Any) -> dict[str, Any]:
    """Shallow field dict of a slotted dataclass (dataclasses.asdict deep-copies: slow)."""
    return {name: getattr(record, name) for name in record.__slots__}


def _by_run(timed: dict[tuple[str, int], float]) -> list[dict[str, Any]]:
    """Executions grouped by run (one update per row), in lock order."""
    runs: dict[str, dict[str, Any]] = {}
    for (run_id, token), seconds in timed.items():
        group = runs.setdefault(
            run_id,
            {"run_id": run_id, "first_token": token, "last_token": token, "seconds": 0.0},
        )
        group["first_token"] = min(group["first_token"], token)
        group["last_token"] = max(group["last_token"], token)
        group["seconds"] += seconds
    return [runs[run_id] for run_id in sorted(runs)]


def _run(row: Row) -> Run:
    for measured in _MEASURED:
        row.pop(measured, None)
    return Run(
        **{
            **row,
            "state": RunState(row["state"]),
            "payload": serialization.loads(row["payload"]),
            "result": serialization.loads(row["result"]),
            "error": serialization.loads(row["error"]),
            "cancel_requested": bool(row["cancel_requested"]),
        }
    )


def _event(row: Row) -> Event:
    return Event(**{**row, "payload": serialization.loads(row["payload"])})


def _step(row: Row) -> Step:
    return Step(
        run_id=row["run_id"],
        key=row["step_key"],
        seq=row["seq"],
        name=row["name"],
        state=row["state"],
        attempts=row["attempts"],
        input_hash=row["input_hash"],
        result=serialization.loads(row["result"]),
        error=serialization.loads(row["error"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
