"""Metering and the shared budget ledger, mixed into SqlStore (schema v6).

- `rota_usage`: one row per model call, keyed by (run_id, step_key). The agent loop records
  a call inside its durable step, right after the provider answered; a step re-executed
  after a crash replaces its row, so a call is never counted twice.
- `rota_agent_sessions`: the time each execution of an agent loop was active.
- `rota_budgets` / `rota_budget_holds`: shared budgets (per agent, workflow or principal, per
  day or month). Before a call its worst case is *held* in one transaction under the
  budget's row lock; recording the call replaces the hold by the actual usage in one
  transaction. Money spent is always read from `rota_usage`, so the ledger has no counter
  that could drift from the metering. A hold expires (a crashed run's hold is dropped by the
  next reservation on that budget after `expires_at`).

Plain job runs never touch these tables: their wall time is read from `rota_runs` when a
report is made (storage/history.py), so the queue's hot path pays nothing for metering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..model import ModelCall, TokenCounts
from .connection import SqlBase
from .dialects import Connection

# Budget scopes and the usage column each one is matched on.
SCOPE_COLUMNS = {"agent": "agent", "workflow": "name", "principal": "principal"}
GROUP_COLUMNS = {
    "agent": "agent",
    "workflow": "name",
    "principal": "principal",
    "trigger": "trigger",
    "model": "model",
}
UsageGroup = Literal["agent", "workflow", "principal", "trigger", "model", "day"]
_TOKENS = "input_tokens + output_tokens + cache_write_tokens + cache_read_tokens"


@dataclass(frozen=True)
class BudgetCharge:
    """One shared budget a call counts against, in one period [start, end)."""

    key: str  # "agent:NAME", "workflow:NAME", "principal:NAME"
    scope: str  # agent | workflow | principal
    value: str  # the agent's, workflow's or principal's name
    period: str  # "2026-11-21" (per day) or "2026-11" (per month), UTC
    start: float
    end: float
    limit_pusd: int | None = None
    limit_tokens: int | None = None
    limit_requests: int | None = None


@dataclass(frozen=True)
class Hold:
    """A call's worst case, held against shared budgets while it is in flight."""

    run_id: str
    step_key: str
    cost_pusd: int
    tokens: int
    requests: int
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class BudgetRefusal:
    """Why a hold was refused: `what` (usd, tokens or requests) of budget `key` in `period`
    has `spent` + `held` (by calls in flight) used, and the call wanted `wanted` more."""

    key: str
    period: str
    what: str
    limit: int
    spent: int
    held: int
    wanted: int


@dataclass(frozen=True)
class UsageTotal:
    """Summed metering of one group of model calls."""

    key: str
    runs: int
    calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    requests: int
    cost_pusd: int

    @property
    def usage(self) -> TokenCounts:
        return TokenCounts.of(self)


class UsageQueries(SqlBase):
    # -- recording --------------------------------------------------------------------

    def record_model_call(self, call: ModelCall) -> None:
        """Store a call's metering (replacing the row of an earlier execution of the same
        step) and release the call's holds, in one transaction: a concurrent reservation
        sees either the hold or the usage, never both and never neither."""
        with self.tx() as conn:
            self.write_model_call(conn, call)

    def write_model_call(self, conn: Connection, call: ModelCall) -> None:
        """record_model_call inside the caller's transaction (the model step's checkpoint:
        see SqlStore.save_step)."""
        params = {name: getattr(call, name) for name in call.__dataclass_fields__}
        params["simulated"] = int(call.simulated)
        columns = ", ".join(params)
        values = ", ".join(f":{c}" for c in params)
        updates = ", ".join(f"{c} = excluded.{c}" for c in params if c not in _KEY)
        conn.execute(
            f"""INSERT INTO rota_usage ({columns}) VALUES ({values})
            ON CONFLICT (run_id, step_key) DO UPDATE SET {updates}""",
            params,
        )
        conn.execute(
            "DELETE FROM rota_budget_holds WHERE run_id = :run_id AND step_key = :step_key",
            {"run_id": call.run_id, "step_key": call.step_key},
        )

    def record_session(
        self,
        run_id: str,
        agent_key: str,
        attempt: int,
        agent: str,
        started_at: float,
        seconds: float,
        tool_calls: int,
    ) -> None:
        """One execution of an agent loop: (run, agent key, attempt) is recorded once."""
        self.conn().execute(
            """INSERT INTO rota_agent_sessions (run_id, agent_key, attempt, agent, started_at,
                seconds, tool_calls)
            VALUES (:run_id, :agent_key, :attempt, :agent, :started_at, :seconds, :tool_calls)
            ON CONFLICT (run_id, agent_key, attempt) DO NOTHING""",
            {
                "run_id": run_id,
                "agent_key": agent_key,
                "attempt": attempt,
                "agent": agent,
                "started_at": started_at,
                "seconds": max(0.0, seconds),
                "tool_calls": tool_calls,
            },
        )

    # -- shared budgets ---------------------------------------------------------------

    def reserve_budgets(
        self, charges: Sequence[BudgetCharge], hold: Hold, now: float
    ) -> BudgetRefusal | None:
        """Hold `hold` against every budget in `charges`, or none of them: the first budget
        it would overspend is returned instead. One transaction, under the budgets' row
        locks (taken in key order, so that reservations cannot deadlock)."""
        if not charges:
            return None
        ordered = sorted(charges, key=lambda c: (c.key, c.period))
        d = self.dialect
        with self.tx() as conn:
            conn.execute_many(
                """INSERT INTO rota_budgets (key, period, created_at) VALUES (:key, :period, :now)
                ON CONFLICT (key, period) DO NOTHING""",
                [{"key": c.key, "period": c.period, "now": now} for c in ordered],
            )
            for c in ordered:
                conn.execute(
                    f"""SELECT key FROM rota_budgets WHERE key = :key AND period = :period
                    {d.row_lock}""",
                    {"key": c.key, "period": c.period},
                )
            for c in ordered:
                # A crashed run's hold would block the budget for ever: drop expired ones.
                conn.execute(
                    """DELETE FROM rota_budget_holds
                    WHERE key = :key AND period = :period AND expires_at <= :now""",
                    {"key": c.key, "period": c.period, "now": now},
                )
                refusal = self._budget_refusal(conn, c, hold)
                if refusal is not None:
                    return refusal
            conn.execute_many(
                """INSERT INTO rota_budget_holds (run_id, step_key, key, period, cost_pusd,
                    tokens, requests, created_at, expires_at)
                VALUES (:run_id, :step_key, :key, :period, :cost_pusd, :tokens, :requests,
                    :created_at, :expires_at)
                ON CONFLICT (run_id, step_key, key) DO UPDATE SET period = excluded.period,
                    cost_pusd = excluded.cost_pusd, tokens = excluded.tokens,
                    requests = excluded.requests, created_at = excluded.created_at,
                    expires_at = excluded.expires_at""",
                [
                    {**{n: getattr(hold, n) for n in hold.__dataclass_fields__}, "key": c.key}
                    | {"period": c.period}
                    for c in ordered
                ],
            )
        return None

    def release_holds(self, run_id: str, step_key: str) -> None:
        """Drop a call's holds when it made no call after all (the provider failed)."""
        self.conn().execute(
            "DELETE FROM rota_budget_holds WHERE run_id = :run_id AND step_key = :step_key",
            {"run_id": run_id, "step_key": step_key},
        )

    def budget_used(self, charge: BudgetCharge) -> tuple[int, int, int]:
        """(picodollars, tokens, requests) spent in the charge's budget and period."""
        column = SCOPE_COLUMNS[charge.scope]
        rows = self.conn().execute(
            f"""SELECT COALESCE(SUM(cost_pusd), 0) AS pusd,
                COALESCE(SUM({_TOKENS}), 0) AS tokens, COALESCE(SUM(requests), 0) AS requests
            FROM rota_usage WHERE {column} = :value AND at >= :start AND at < :end""",
            {"value": charge.value, "start": charge.start, "end": charge.end},
        )
        row = rows[0]
        return int(row["pusd"]), int(row["tokens"]), int(row["requests"])

    def budget_held(self, charge: BudgetCharge, now: float) -> tuple[int, int, int]:
        """(picodollars, tokens, requests) held by model calls in flight against the
        charge's budget and period (expired holds, of crashed runs, do not count)."""
        rows = self.conn().execute(
            """SELECT COALESCE(SUM(cost_pusd), 0) AS pusd, COALESCE(SUM(tokens), 0) AS tokens,
                COALESCE(SUM(requests), 0) AS requests
            FROM rota_budget_holds
            WHERE key = :key AND period = :period AND expires_at > :now""",
            {"key": charge.key, "period": charge.period, "now": now},
        )
        row = rows[0]
        return int(row["pusd"]), int(row["tokens"]), int(row["requests"])

    def _budget_refusal(
        self, conn: Connection, c: BudgetCharge, hold: Hold
    ) -> BudgetRefusal | None:
        # One statement, so that it reads usage and holds from one snapshot: a call being
        # recorded concurrently (hold replaced by usage) is counted exactly once.
        column = SCOPE_COLUMNS[c.scope]
        rows = conn.execute(
            f"""SELECT u.pusd, u.tokens, u.requests, h.pusd AS held_pusd,
                h.tokens AS held_tokens, h.requests AS held_requests
            FROM (SELECT COALESCE(SUM(cost_pusd), 0) AS pusd,
                    COALESCE(SUM({_TOKENS}), 0) AS tokens,
                    COALESCE(SUM(requests), 0) AS requests
                  FROM rota_usage WHERE {column} = :value AND at >= :start AND at < :end) u,
                 (SELECT COALESCE(SUM(cost_pusd), 0) AS pusd, COALESCE(SUM(tokens), 0) AS tokens,
                    COALESCE(SUM(requests), 0) AS requests
                  FROM rota_budget_holds WHERE key = :key AND period = :period
                    AND NOT (run_id = :run_id AND step_key = :step_key)) h""",
            {
                "value": c.value,
                "start": c.start,
                "end": c.end,
                "key": c.key,
                "period": c.period,
                "run_id": hold.run_id,
                "step_key": hold.step_key,
            },
        )
        row = rows[0]
        checks = (
            ("usd", c.limit_pusd, "pusd", hold.cost_pusd),
            ("tokens", c.limit_tokens, "tokens", hold.tokens),
            ("requests", c.limit_requests, "requests", hold.requests),
        )
        for what, limit, column_name, wanted in checks:
            if limit is None:
                continue
            spent, held = int(row[column_name]), int(row[f"held_{column_name}"])
            if spent + held + wanted > limit:
                return BudgetRefusal(c.key, c.period, what, limit, spent, held, wanted)
        return None

    # -- reading ----------------------------------------------------------------------

    def usage_totals(self, by: UsageGroup, since: float, until: float) -> list[UsageTotal]:
        """Model calls in [since, until) summed per agent, workflow, principal, trigger,
        model or UTC day (as YYYY-MM-DD), most expensive first (days in order)."""
        if by == "day":
            key = self._usage_day_expr()
        elif by in GROUP_COLUMNS:
            key = GROUP_COLUMNS[by]
        else:
            raise ValueError(f"cannot group usage by {by!r}")
        rows = self.conn().execute(
            f"""SELECT {key} AS key, COUNT(DISTINCT run_id) AS runs, COUNT(*) AS calls,
                SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
                SUM(cache_write_tokens) AS cache_write_tokens,
                SUM(cache_read_tokens) AS cache_read_tokens,
                SUM(reasoning_tokens) AS reasoning_tokens, SUM(requests) AS requests,
                SUM(cost_pusd) AS cost_pusd
            FROM rota_usage WHERE at >= :since AND at < :until GROUP BY {key}""",
            {"since": since, "until": until},
        )
        totals = [_total(row, by) for row in rows]
        if by == "day":
            return sorted(totals, key=lambda t: t.key)
        return sorted(totals, key=lambda t: (-t.cost_pusd, t.key))

    def model_calls(self, run_id: str) -> list[ModelCall]:
        rows = self.conn().execute(
            "SELECT * FROM rota_usage WHERE run_id = :id ORDER BY at, step_key", {"id": run_id}
        )
        return [ModelCall(**{**row, "simulated": bool(row["simulated"])}) for row in rows]

    def _usage_day_expr(self) -> str:
        # Epoch seconds to a UTC date; CAST truncates on SQLite, FLOOR is exact on PostgreSQL.
        if self.dialect.name == "sqlite":
            return "date(CAST(at AS INTEGER), 'unixepoch')"
        return "to_char(to_timestamp(FLOOR(at)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


_KEY = ("run_id", "step_key")


def _ints(row: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Sums as ints (PostgreSQL's SUM of BIGINT is NUMERIC: a Decimal in Python)."""
    return {k: v if k in keep else int(v or 0) for k, v in row.items()}


def _total(row: dict[str, Any], by: str) -> UsageTotal:
    key = row["key"]
    return UsageTotal(**{**_ints(row, keep=("key",)), "key": "(none)" if key is None else str(key)})
