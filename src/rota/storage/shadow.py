"""Shadow comparisons, the record and its rows, mixed into SqlStore: one row per shadow run
(see rota.shadow)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import serialization
from .connection import SqlBase
from .dialects import Row


@dataclass(frozen=True)
class ShadowRecord:
    run_id: str  # the shadow run
    parent_id: str  # the job run it shadows
    name: str  # the job
    agent: str
    created_at: float
    fields: Mapping[str, bool]  # field -> the job and the agent agree
    job_result: Any
    agent_output: Any
    tokens: int
    error: str | None = None  # the agent did not reach a decision

    @property
    def agreed(self) -> bool | None:
        return None if self.error is not None else all(self.fields.values())


class ShadowQueries(SqlBase):
    def record_shadow(self, record: ShadowRecord) -> None:
        """Store a comparison once: a shadow run re-executed after a crash replaces its row."""
        params = {
            "run_id": record.run_id,
            "parent_id": record.parent_id,
            "name": record.name,
            "agent": record.agent,
            "created_at": record.created_at,
            "agreed": None if record.agreed is None else int(record.agreed),
            "fields": json.dumps(dict(record.fields), sort_keys=True),
            "job_result": serialization.dumps(record.job_result, what="the job's result"),
            "agent_output": serialization.dumps(record.agent_output, what="the agent's output"),
            "tokens": record.tokens,
            "error": record.error,
        }
        self.conn().execute(
            """INSERT INTO rota_shadow (run_id, parent_id, name, agent, created_at, agreed,
                fields, job_result, agent_output, tokens, error)
            VALUES (:run_id, :parent_id, :name, :agent, :created_at, :agreed, :fields,
                :job_result, :agent_output, :tokens, :error)
            ON CONFLICT (run_id) DO UPDATE SET agreed = excluded.agreed,
                fields = excluded.fields, agent_output = excluded.agent_output,
                tokens = excluded.tokens, error = excluded.error,
                created_at = excluded.created_at""",
            params,
        )

    def shadowed_names(self) -> list[str]:
        """The jobs that have shadow comparisons, by name."""
        rows = self.conn().execute("SELECT DISTINCT name FROM rota_shadow ORDER BY name", {})
        return [r["name"] for r in rows]

    def shadow_records(self, name: str, since: float | None = None) -> list[ShadowRecord]:
        """The comparisons of one job, oldest first."""
        rows = self.conn().execute(
            """SELECT * FROM rota_shadow WHERE name = :name AND created_at >= :since
            ORDER BY created_at, run_id""",
            {"name": name, "since": since if since is not None else -1e18},
        )
        return [_record(r) for r in rows]


def _record(row: Row) -> ShadowRecord:
    return ShadowRecord(
        run_id=row["run_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        agent=row["agent"],
        created_at=float(row["created_at"]),
        fields=json.loads(row["fields"]),
        job_result=serialization.loads(row["job_result"]),
        agent_output=serialization.loads(row["agent_output"]),
        tokens=int(row["tokens"]),
        error=row["error"],
    )
