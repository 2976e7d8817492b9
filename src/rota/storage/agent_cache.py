"""The agent decision cache's record and rows, mixed into SqlStore (see rota.agentloop.cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import serialization
from .connection import SqlBase


@dataclass(frozen=True)
class CachedDecision:
    key: str
    agent: str
    text: str
    output: Any  # the output as JSON (AgentResult.output_json)
    run_id: str | None
    created_at: float
    expires_at: float


class AgentCacheQueries(SqlBase):
    def cached_decision(self, key: str, now: float) -> CachedDecision | None:
        rows = self.conn().execute(
            "SELECT * FROM rota_agent_cache WHERE key = :key AND expires_at > :now",
            {"key": key, "now": now},
        )
        if not rows:
            return None
        r = rows[0]
        return CachedDecision(
            key=r["key"],
            agent=r["agent"],
            text=r["text"],
            output=serialization.loads(r["output"]),
            run_id=r["run_id"],
            created_at=float(r["created_at"]),
            expires_at=float(r["expires_at"]),
        )

    def cache_decision(self, decision: CachedDecision) -> None:
        """Store or refresh a decision (the newest accepted answer wins)."""
        self.conn().execute(
            """INSERT INTO rota_agent_cache (key, agent, created_at, expires_at, run_id, text,
                output)
            VALUES (:key, :agent, :created_at, :expires_at, :run_id, :text, :output)
            ON CONFLICT (key) DO UPDATE SET created_at = excluded.created_at,
                expires_at = excluded.expires_at, run_id = excluded.run_id,
                text = excluded.text, output = excluded.output""",
            {
                "key": decision.key,
                "agent": decision.agent,
                "created_at": decision.created_at,
                "expires_at": decision.expires_at,
                "run_id": decision.run_id,
                "text": decision.text,
                "output": serialization.dumps(decision.output, what="a cached decision"),
            },
        )
