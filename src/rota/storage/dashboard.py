"""What the dashboard stores and reads beyond the API's queries: small rows in `rota_meta`
(its sessions, one-time login codes, and the key they are kept under) and the runs of a
time window, for the overview's rates and percentiles.

`rota_meta` is the schema's key-value table; the dashboard's keys all start with
`dashboard.`, so they never meet the schema version or the audit head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .audit import AuditRecord, _record
from .connection import SqlBase


@dataclass(frozen=True)
class WindowRun:
    """One run created in a window: enough for rates, failure share and durations."""

    id: str
    name: str
    kind: str
    state: str
    created_at: float
    started_at: float | None
    finished_at: float | None


class DashboardQueries(SqlBase):
    def meta_value(self, key: str) -> str | None:
        rows = self.conn().execute("SELECT value FROM rota_meta WHERE key = :key", {"key": key})
        return str(rows[0]["value"]) if rows else None

    def meta_keep(self, key: str, value: str) -> str:
        """Store `value` under `key` unless a value is there already; return the one kept
        (so that two processes racing to make the same key agree on one)."""
        with self.tx() as conn:
            conn.execute(
                """INSERT INTO rota_meta (key, value) VALUES (:key, :value)
                ON CONFLICT (key) DO NOTHING""",
                {"key": key, "value": value},
            )
            rows = conn.execute("SELECT value FROM rota_meta WHERE key = :key", {"key": key})
        return str(rows[0]["value"])

    def meta_take(self, key: str) -> str | None:
        """Delete `key` and return what it held; of two callers, only one gets it."""
        rows = self.conn().execute(
            "DELETE FROM rota_meta WHERE key = :key RETURNING value", {"key": key}
        )
        return str(rows[0]["value"]) if rows else None

    def meta_prefixed(self, prefix: str) -> dict[str, str]:
        """Every key starting with `prefix` (which holds no LIKE wildcards) and its value."""
        rows = self.conn().execute(
            "SELECT key, value FROM rota_meta WHERE key LIKE :pattern",
            {"pattern": prefix + "%"},
        )
        return {str(r["key"]): str(r["value"]) for r in rows}

    def meta_drop(self, keys: list[str]) -> None:
        for key in keys:
            self.conn().execute("DELETE FROM rota_meta WHERE key = :key", {"key": key})

    def window_runs(self, since: float, until: float, limit: int) -> list[WindowRun]:
        """Runs created in [since, until), newest first, at most `limit` (an index range
        scan on rota_runs_created)."""
        rows = self.conn().execute(
            """SELECT id, name, kind, state, created_at, started_at, finished_at
            FROM rota_runs WHERE created_at >= :since AND created_at < :until
            ORDER BY created_at DESC LIMIT :limit""",
            {"since": since, "until": until, "limit": limit},
        )
        return [WindowRun(**row) for row in rows]

    def audit_page(
        self,
        *,
        actor: str | None,
        action: str | None,
        since: float | None,
        until: float | None,
        before_seq: int | None,
        limit: int,
    ) -> list[AuditRecord]:
        """Audit records newest first, keyset-paged by seq (`before_seq`: the last seq of
        the previous page). `actor` matches who acted or on whose behalf; `action` matches
        exactly, or by prefix when it ends with ".*"."""
        where, params = ["1 = 1"], dict[str, Any](limit=limit)
        if actor:
            where.append("(actor = :actor OR on_behalf_of = :actor)")
            params["actor"] = actor
        if action:
            prefix = action.endswith(".*")
            where.append("action LIKE :action" if prefix else "action = :action")
            # "_" in a prefix matches any one character: a little broader, never narrower
            params["action"] = action[:-1] + "%" if prefix else action
        for column, op, value in (
            ("at", ">=", since),
            ("at", "<", until),
            ("seq", "<", before_seq),
        ):
            if value is not None:
                name = f"{column}_{len(params)}"
                where.append(f"{column} {op} :{name}")
                params[name] = value
        rows = self.conn().execute(
            f"""SELECT * FROM rota_audit WHERE {" AND ".join(where)}
            ORDER BY seq DESC LIMIT :limit""",
            params,
        )
        return [_record(row) for row in rows]
