"""Durable waits, mixed into SqlStore: a run parks on a sleep or an event and wakes once.

`park` resolves a wait at once when it can (a matching event is already stored, or the
deadline has passed) or registers it: one rota_waits row per topic, the run WAITING and
without a lease, so it holds no worker. A registered wait is resolved by an event
(`record_event` calls `_wake_for_event` in its own transaction), by its deadline passing
(`wake_due_waits`, which workers call), or by a decision (`resolve_wait`, for approvals).
Resolving closes the wait, checkpoints its step with the outcome and queues the run, all in
one transaction; the resumed workflow replays up to the wait and returns that checkpoint.

Exactly once: a wait's rows change only under its run's row lock (SQLite: the database
lock) and only while the wait is open, so it resolves once however many try. Never missed:
per event name, a parker holds an exclusive advisory lock while it looks back and registers,
and an event's writer a shared one while it looks for open waits (SQLite has one writer
anyway), so whichever commits second sees the other's row. Lock order: advisory locks, then
run rows by id, then wait rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import serialization
from ..model import Event, NewWait, Wait
from .connection import SqlBase
from .dialects import Connection, Row

OPEN = "waiting"
_LOOK_BACK_PAGE = 200
_SWEEP_BATCHES = 20
# By-key lookups compare status to a parameter (:open), scans of open waits to the literal:
# see the note on PostgreSQL's generic plans in runs.py.
_CLOSE = """UPDATE rota_waits SET status = :status, event_id = :event_id, resolved_at = :now
    WHERE run_id = :run_id AND step_key = :step_key AND status = :open
    RETURNING run_id, step_key, step_name, seq, kind, deadline, created_at"""
_CHECKPOINT = """INSERT INTO rota_steps (run_id, step_key, seq, name, state, attempts,
        input_hash, result, error, started_at, finished_at, lease_token)
    VALUES (:run_id, :step_key, :seq, :name, 'SUCCEEDED', 1, NULL, :result, NULL,
        :started_at, :finished_at, :lease_token)
    ON CONFLICT (run_id, step_key) DO UPDATE SET state = excluded.state,
        result = excluded.result, error = NULL, finished_at = excluded.finished_at,
        lease_token = excluded.lease_token
    WHERE rota_steps.state <> 'SUCCEEDED'"""
_NEXT_DEADLINE = "SELECT MIN(deadline) AS due FROM rota_waits WHERE status = 'waiting'"

Outcome = Callable[[Row], Any]  # the closed wait (kind, deadline, ...) -> what its step returns


@dataclass(frozen=True, slots=True)
class Parking:
    """What a request to park came to: "parked"; "resolved" at once, with the outcome its
    step returns in `result`; "cancelled" (a cancel was requested); or "lease_lost"."""

    state: str
    result: Any = None


def event_topic(name: str) -> str:
    return f"event:{name}"


class WaitQueries(SqlBase):
    # -- parking -----------------------------------------------------------------------

    def park(self, wait: NewWait, now: float) -> Parking:
        """Resolve the wait at once if it can be, else park the run on it. Fenced: only the
        holder of the run's lease (wait.lease_token) may park it."""
        with self.tx() as conn:
            return self._park(conn, wait, now)

    def _park(self, conn: Connection, wait: NewWait, now: float) -> Parking:
        """`park` inside the caller's transaction (an approval stores its request with it)."""
        for topic in sorted(wait.topics):
            self.dialect.lock(conn, _lock_name(topic))
        held = conn.execute(
            f"""SELECT cancel_requested FROM rota_runs WHERE id = :id
            AND lease_token = :token AND state = :running {self.dialect.row_lock}""",
            {"id": wait.run_id, "token": wait.lease_token, "running": "RUNNING"},
        )
        if not held:
            return Parking("lease_lost")
        if held[0]["cancel_requested"]:
            return Parking("cancelled")
        # A run retried after a cancel registers its wait afresh.
        conn.execute(
            "DELETE FROM rota_waits WHERE run_id = :run_id AND step_key = :step_key",
            {"run_id": wait.run_id, "step_key": wait.step_key},
        )
        event = self._look_back(conn, wait) if wait.kind == "event" else None
        if event is not None:
            return self._resolve_now(conn, wait, "resolved", event, now)
        if wait.deadline is not None and wait.deadline <= now:
            return self._resolve_now(conn, wait, "timed_out", None, now)
        self._insert(conn, wait, OPEN, None, None)
        conn.execute(
            """UPDATE rota_runs SET state = 'WAITING', lease_owner = NULL,
                lease_expires_at = NULL, run_after = COALESCE(:deadline, run_after)
            WHERE id = :id""",
            {"id": wait.run_id, "deadline": wait.deadline},
        )
        return Parking("parked")

    def _look_back(self, conn: Connection, wait: NewWait) -> Event | None:
        """The earliest matching event stored since wait.since, and before its deadline,
        that this run has not consumed yet (one event satisfies one wait of a run)."""
        d = self.dialect
        match = wait.detail.get("match")
        params = {
            "names": d.list_param(wait.detail["names"]),
            "run_id": wait.run_id,
            "since": wait.since,
            "at": wait.since,
            "id": "",
            "limit": _LOOK_BACK_PAGE,
        }
        while True:
            rows = conn.execute(
                f"""SELECT * FROM rota_events
                WHERE {d.any_of("name", "names")} AND created_at >= :since
                  AND (created_at > :at OR (created_at = :at AND id > :id))
                  AND id NOT IN (SELECT event_id FROM rota_waits
                                 WHERE run_id = :run_id AND event_id IS NOT NULL)
                ORDER BY created_at, id LIMIT :limit""",
                params,
            )
            for row in rows:
                if wait.deadline is not None and row["created_at"] >= wait.deadline:
                    return None
                event = Event(**{**row, "payload": serialization.loads(row["payload"])})
                if payload_matches(match, event.payload):
                    return event
            if len(rows) < _LOOK_BACK_PAGE:
                return None
            params.update(at=rows[-1]["created_at"], id=rows[-1]["id"])

    def _resolve_now(
        self, conn: Connection, wait: NewWait, status: str, event: Event | None, now: float
    ) -> Parking:
        final = _final_status(status, {"kind": wait.kind}, waiting=True)
        self._insert(conn, wait, final, event.id if event else None, now)
        row = {
            "run_id": wait.run_id,
            "step_key": wait.step_key,
            "step_name": wait.step_name,
            "seq": wait.seq,
            "kind": wait.kind,
            "deadline": wait.deadline,
            "created_at": wait.created_at,
        }
        outcome = _event_outcome(event)(row) if event else _timed_out(row)
        self._checkpoint(conn, row, outcome, now, wait.lease_token)
        return Parking("resolved", serialization.roundtrip(outcome, what="wait outcome"))

    def _insert(
        self,
        conn: Connection,
        wait: NewWait,
        status: str,
        event_id: str | None,
        resolved_at: float | None,
    ) -> None:
        detail = serialization.dumps(wait.detail, what="the wait's detail")
        conn.execute_many(
            """INSERT INTO rota_waits (run_id, step_key, topic, kind, step_name, seq, detail,
                since, deadline, status, event_id, created_at, resolved_at)
            VALUES (:run_id, :step_key, :topic, :kind, :step_name, :seq, :detail, :since,
                :deadline, :status, :event_id, :created_at, :resolved_at)""",
            [
                {
                    "run_id": wait.run_id,
                    "step_key": wait.step_key,
                    "topic": topic,
                    "kind": wait.kind,
                    "step_name": wait.step_name,
                    "seq": wait.seq,
                    "detail": detail,
                    "since": wait.since,
                    "deadline": wait.deadline,
                    "status": status,
                    "event_id": event_id,
                    "created_at": wait.created_at,
                    "resolved_at": resolved_at,
                }
                for topic in wait.topics or ("",)
            ],
        )

    # -- waking ------------------------------------------------------------------------

    def _wake_for_event(self, conn: Connection, event: Event) -> list[str]:
        """Inside the transaction that stores `event`: resolve every open wait it fits (of
        any number of runs) and queue their runs. Returns their ids."""
        topic = event_topic(event.name)
        self.dialect.lock(conn, _lock_name(topic), shared=True)
        rows = conn.execute(
            """SELECT run_id, step_key, detail, deadline FROM rota_waits
            WHERE topic = :topic AND status = 'waiting' ORDER BY run_id""",
            {"topic": topic},
        )
        if not rows:
            return []
        payload = serialization.roundtrip(event.payload, what="payload")
        fits = [
            r
            for r in rows
            if (r["deadline"] is None or event.created_at < r["deadline"])  # else: timed out
            and payload_matches(_match_of(r), payload)
        ]
        if not fits:
            return []
        outcome = _event_outcome(replace(event, payload=payload))
        return self._resolve(conn, fits, "resolved", outcome, event.created_at, event_id=event.id)

    def wake_due_waits(self, now: float, limit: int = 500) -> float | None:
        """Time out the open waits whose deadline has passed (a sleep is over; a wait for an
        event returns None) and queue their runs. Returns the next deadline (None: none);
        one already passed belongs to a run another resolver holds right now."""
        due = self._next_deadline(self.conn())  # a read first: SQLite has one write lock
        if due is None or due > now:
            return due
        for _ in range(_SWEEP_BATCHES):
            with self.tx() as conn:
                rows = conn.execute(
                    """SELECT DISTINCT run_id, step_key, kind FROM rota_waits
                    WHERE status = 'waiting' AND deadline <= :now
                    ORDER BY run_id, step_key LIMIT :limit""",
                    {"now": now, "limit": limit},
                )
                if rows:
                    self._resolve(conn, rows, "timed_out", _timed_out, now, skip_locked=True)
            if len(rows) < limit:
                break
        return self._next_deadline(self.conn())

    def resolve_wait(self, run_id: str, step_key: str, outcome: Any, now: float) -> bool:
        """Resolve an open wait with a decision rather than an event (e.g. an approval): its
        step returns `outcome` (JSON). False when the wait is not open (any more)."""
        serialization.dumps(outcome, what="the outcome of a wait")
        with self.tx() as conn:
            rows = conn.execute(
                """SELECT DISTINCT run_id, step_key FROM rota_waits
                WHERE run_id = :run_id AND step_key = :step_key AND status = :open""",
                {"run_id": run_id, "step_key": step_key, "open": OPEN},
            )
            woken = self._resolve(conn, rows, "resolved", lambda _: outcome, now) if rows else []
        return bool(woken)

    def _resolve(
        self,
        conn: Connection,
        waits: Sequence[Row],
        status: str,
        outcome: Outcome,
        now: float,
        *,
        event_id: str | None = None,
        skip_locked: bool = False,
    ) -> list[str]:
        """Close open waits (rows with run_id and step_key), checkpoint their steps with
        their outcome and queue their runs; returns the ids of the runs queued. A wait whose
        run is locked (skip_locked) is left for later; one whose run is no longer WAITING
        is closed as cancelled."""
        d = self.dialect
        ids = sorted({w["run_id"] for w in waits})
        runs = {
            r["id"]: r
            for r in conn.execute(
                f"""SELECT id, state, lease_token FROM rota_runs
                WHERE {d.any_of("id", "ids")} ORDER BY id
                {d.skip_locked if skip_locked else d.row_lock}""",
                {"ids": d.list_param(ids)},
            )
        }
        woken = []
        for wait in waits:
            run = runs.get(wait["run_id"])
            if run is None:
                continue
            waiting = run["state"] == "WAITING"
            final = _final_status(status, wait, waiting=waiting)
            closed = self._close(conn, wait, final, event_id, now)
            if closed is None:
                continue
            self._wait_closed(conn, closed, final, now)
            if not waiting:
                continue
            self._checkpoint(conn, closed, outcome(closed), now, run["lease_token"])
            woken.append(run["id"])
        if woken:
            conn.execute(
                f"""UPDATE rota_runs SET state = 'ENQUEUED', run_after = :now
                WHERE {d.any_of("id", "ids")} AND state = :waiting""",
                {"ids": d.list_param(woken), "now": now, "waiting": "WAITING"},
            )
            d.notify(conn)
        return woken

    def _close(
        self, conn: Connection, wait: Row, status: str, event_id: str | None, now: float
    ) -> Row | None:
        rows = conn.execute(
            _CLOSE,
            {
                "run_id": wait["run_id"],
                "step_key": wait["step_key"],
                "status": status,
                "event_id": event_id,
                "now": now,
                "open": OPEN,
            },
        )
        return rows[0] if rows else None

    def _checkpoint(
        self, conn: Connection, wait: Row, outcome: Any, now: float, lease_token: int
    ) -> None:
        """Record the wait's step as done, from when it was registered until now."""
        conn.execute(
            _CHECKPOINT,
            {
                "run_id": wait["run_id"],
                "step_key": wait["step_key"],
                "seq": wait["seq"],
                "name": wait["step_name"],
                "result": serialization.dumps(outcome, what="wait outcome"),
                "started_at": wait["created_at"],
                "finished_at": now,
                "lease_token": lease_token,
            },
        )

    def _close_waits(self, conn: Connection, run_ids: Sequence[str], now: float) -> None:
        """Cancel the open waits of these runs (the caller cancels the runs)."""
        d = self.dialect
        closed = conn.execute(
            f"""UPDATE rota_waits SET status = 'cancelled', resolved_at = :now
            WHERE {d.any_of("run_id", "ids")} AND status = :open
            RETURNING run_id, step_key, step_name, seq, kind, deadline, created_at""",
            {"ids": d.list_param(run_ids), "now": now, "open": OPEN},
        )
        for wait in closed:
            self._wait_closed(conn, wait, "cancelled", now)

    def _wait_closed(self, conn: Connection, wait: Row, status: str, now: float) -> None:
        """Hook, inside the transaction that closed `wait` (its run's row is locked) with
        `status` (resolved, timed_out or cancelled): approvals (ApprovalQueries in
        storage/approvals.py, a subclass) record their timeouts and expiries here."""

    # -- reading -----------------------------------------------------------------------

    def wake_times(self, names: Sequence[str]) -> tuple[float | None, float | None]:
        """When the earliest queued run of these jobs is due, and when the earliest open
        wait times out: what an idle worker sleeps until (one query)."""
        row = self.conn().execute(
            f"""SELECT (SELECT MIN(run_after) FROM rota_runs WHERE state = 'ENQUEUED'
                        AND {self.dialect.any_of("name", "names")}) AS due,
                       ({_NEXT_DEADLINE}) AS wait_due""",
            {"names": self.dialect.list_param(names)},
        )[0]
        return row["due"], row["wait_due"]

    def _next_deadline(self, conn: Connection) -> float | None:
        return conn.execute(_NEXT_DEADLINE)[0]["due"]

    def waits(self, run_ids: Sequence[str]) -> list[Wait]:
        """The waits of these runs, open and closed, in the order they were registered."""
        if not run_ids:
            return []
        rows = self.conn().execute(
            f"""SELECT * FROM rota_waits WHERE {self.dialect.any_of("run_id", "ids")}
            ORDER BY run_id, created_at, seq, topic""",
            {"ids": self.dialect.list_param(run_ids)},
        )
        grouped: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            grouped.setdefault((row["run_id"], row["step_key"]), []).append(row)
        return [_wait(group) for group in grouped.values()]


def payload_matches(match: Mapping[str, Any] | None, payload: Any) -> bool:
    """`match` is top-level keys of the payload and the values they must equal, as JSON
    values: 1 == 1.0, but "1" != 1 and true != 1."""
    if not match:
        return True
    if not isinstance(payload, dict):
        return False
    return all(key in payload and json_equal(payload[key], want) for key, want in match.items())


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _event_outcome(event: Event) -> Outcome:
    data = {name: getattr(event, name) for name in event.__slots__}
    return lambda _: {"event": data}


def _final_status(status: str, wait: Row, *, waiting: bool) -> str:
    if not waiting:  # its run ended some other way (e.g. cancelled): so does the wait
        return "cancelled"
    # A sleep ends at its deadline: that is its resolution, not a timeout.
    return "resolved" if status == "timed_out" and wait.get("kind") == "sleep" else status


def _match_of(wait: Row) -> Any:
    return serialization.loads(wait["detail"]).get("match")


def _timed_out(wait: Row) -> Any:
    if wait["kind"] == "sleep":
        return {"until": wait["deadline"]}
    return {"event": None, "timed_out": True}


def _lock_name(topic: str) -> str:
    return f"rota_wait:{topic}"


def _wait(rows: list[Row]) -> Wait:
    first = rows[0]
    return Wait(
        run_id=first["run_id"],
        step_key=first["step_key"],
        kind=first["kind"],
        topics=tuple(r["topic"] for r in rows if r["topic"]),
        detail=serialization.loads(first["detail"]),
        since=first["since"],
        deadline=first["deadline"],
        status=first["status"],
        event_id=first["event_id"],
        created_at=first["created_at"],
        resolved_at=first["resolved_at"],
    )
