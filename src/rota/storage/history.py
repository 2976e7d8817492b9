"""What a cost report reads of the recorded history, mixed into SqlStore: the runs that
started in a window, their compute time, model usage, agent sessions and parked time, and the
prices their calls were billed at (see rota.cost.history, which turns them into RunCost
records).

Plain job runs are metered from their rows in `rota_runs`: the time their bodies executed
(`compute_s`) rides on the worker's batched completion writes, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import TokenCounts
from .connection import SqlBase
from .dialects import Connection


@dataclass(frozen=True)
class RunRow:
    """What a cost report needs of one run (see rota.cost.history)."""

    id: str
    name: str
    kind: str
    principal: str | None
    trigger: str | None
    parent_id: str | None  # the run that escalated to this one, if any
    started_at: float
    finished_at: float | None
    parked_s: float  # time spent parked on durable waits (not compute)
    # Seconds its bodies executed, summed over executions; None when none was measured
    # (recorded before rota measured it, or every execution was lost with its worker).
    compute_s: float | None = None


@dataclass(frozen=True)
class RunUsage:
    """One run's summed usage of one model, with the agent that made the calls."""

    run_id: str
    model: str
    agent: str
    usage: TokenCounts
    cost_pusd: int


@dataclass(frozen=True)
class RunSession:
    run_id: str
    seconds: float
    tool_calls: int


class HistoryQueries(SqlBase):
    def run_rows(self, since: float, until: float) -> list[RunRow]:
        """Runs that started in [since, until), with their compute time and the time each
        spent parked."""
        return self._run_rows(self.conn(), *_window(since, until))

    def run_rows_of(self, conn: Connection, ids: Sequence[str]) -> list[RunRow]:
        """run_rows for these runs (those that started), inside the caller's transaction
        (retention rolls runs up as it deletes them)."""
        return self._run_rows(conn, *self._ids(ids))

    def _run_rows(self, conn: Connection, where: str, params: dict[str, Any]) -> list[RunRow]:
        rows = conn.execute(
            f"""SELECT id, name, kind, principal, trigger, parent_id, started_at, finished_at,
                compute_s
            FROM rota_runs r WHERE {where} AND r.started_at IS NOT NULL
            ORDER BY started_at, id""",
            params,
        )
        parked = self._parked_seconds(conn, where, params)
        return [RunRow(**row, parked_s=parked.get(row["id"], 0.0)) for row in rows]

    def run_usage(self, since: float, until: float) -> list[RunUsage]:
        """Usage per (run, model, agent) of the runs that started in [since, until)."""
        return self._run_usage(self.conn(), *_window(since, until))

    def run_usage_of(self, conn: Connection, ids: Sequence[str]) -> list[RunUsage]:
        return self._run_usage(conn, *self._ids(ids))

    def _run_usage(self, conn: Connection, where: str, params: dict[str, Any]) -> list[RunUsage]:
        rows = conn.execute(
            f"""SELECT u.run_id, u.model, u.agent, SUM(u.input_tokens) AS input_tokens,
                SUM(u.output_tokens) AS output_tokens,
                SUM(u.cache_write_tokens) AS cache_write_tokens,
                SUM(u.cache_read_tokens) AS cache_read_tokens,
                SUM(u.reasoning_tokens) AS reasoning_tokens, SUM(u.requests) AS requests,
                SUM(u.cost_pusd) AS cost_pusd
            FROM rota_usage u JOIN rota_runs r ON r.id = u.run_id
            WHERE {where}
            GROUP BY u.run_id, u.model, u.agent""",
            params,
        )
        return [_run_usage(_ints(row, keep=("run_id", "model", "agent"))) for row in rows]

    def run_sessions(self, since: float, until: float) -> list[RunSession]:
        """Agent session seconds per run (summed over executions) and tool calls (each
        execution counts the calls it replayed too: the largest count per agent is it)."""
        return self._run_sessions(self.conn(), *_window(since, until))

    def run_sessions_of(self, conn: Connection, ids: Sequence[str]) -> list[RunSession]:
        return self._run_sessions(conn, *self._ids(ids))

    def _run_sessions(
        self, conn: Connection, where: str, params: dict[str, Any]
    ) -> list[RunSession]:
        rows = conn.execute(
            f"""SELECT s.run_id, s.agent_key, SUM(s.seconds) AS seconds,
                MAX(s.tool_calls) AS tool_calls
            FROM rota_agent_sessions s JOIN rota_runs r ON r.id = s.run_id
            WHERE {where}
            GROUP BY s.run_id, s.agent_key""",
            params,
        )
        sessions: dict[str, tuple[float, int]] = {}
        for row in rows:
            seconds, calls = sessions.get(row["run_id"], (0.0, 0))
            sessions[row["run_id"]] = (
                seconds + float(row["seconds"]),
                calls + int(row["tool_calls"]),
            )
        return [RunSession(run_id, s, c) for run_id, (s, c) in sessions.items()]

    def recorded_prices(self, since: float, until: float) -> list[tuple[str, str, float]]:
        """(model, price JSON, first use) of every distinct price calls were billed at."""
        rows = self.conn().execute(
            """SELECT model, price, MIN(at) AS first FROM rota_usage
            WHERE at >= :since AND at < :until GROUP BY model, price ORDER BY model, first""",
            {"since": since, "until": until},
        )
        return [(r["model"], r["price"], float(r["first"])) for r in rows]

    def _parked_seconds(
        self, conn: Connection, where: str, params: dict[str, Any]
    ) -> dict[str, float]:
        # A wait on several topics has a row per topic: one span per (run, step).
        rows = conn.execute(
            f"""SELECT w.run_id, w.step_key, MIN(w.created_at) AS parked,
                MAX(w.resolved_at) AS resumed
            FROM rota_waits w JOIN rota_runs r ON r.id = w.run_id
            WHERE {where} AND w.resolved_at IS NOT NULL
            GROUP BY w.run_id, w.step_key""",
            params,
        )
        parked: dict[str, float] = {}
        for row in rows:
            span = max(0.0, float(row["resumed"]) - float(row["parked"]))
            parked[row["run_id"]] = parked.get(row["run_id"], 0.0) + span
        return parked

    def _ids(self, ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
        return self.dialect.any_of("r.id", "ids"), {"ids": self.dialect.list_param(ids)}


def _window(since: float, until: float) -> tuple[str, dict[str, Any]]:
    """The runs that started in [since, until), as a WHERE clause on `r` and its params."""
    return "r.started_at >= :since AND r.started_at < :until", {"since": since, "until": until}


def _ints(row: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Sums as ints (PostgreSQL's SUM of BIGINT is NUMERIC: a Decimal in Python)."""
    return {k: v if k in keep else int(v or 0) for k, v in row.items()}


def _run_usage(row: dict[str, Any]) -> RunUsage:
    counts = {name: row.pop(name) for name in TokenCounts.__dataclass_fields__}
    return RunUsage(**row, usage=TokenCounts(**counts))
