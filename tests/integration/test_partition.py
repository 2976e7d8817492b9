"""deploy/postgres/partition_steps_usage.sql, tested: it turns rota_steps and rota_usage of a
live rota database into monthly range partitions by run id (rota's ids are time-ordered), and
rota works on the result. The storage contract suite runs again here on a partitioned
schema (its tests are imported, and the `store` fixture below replaces conftest's), plus a
workflow, an agent's metering, a cost report and a prune, with rows checked to land in the
month's partition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

# The contract suite, collected again in this module with the partitioned `store` below.
from test_store_contract import *  # noqa: F403
from test_store_contract import new_run, step  # noqa: F401 (the suite's helpers, named)

from rota import Agent, App, RunState
from rota.agents.types import ModelRequest
from rota.cost import Price
from rota.retention import RetentionPolicy, prune
from rota.storage import SqlStore
from rota.testing import ScriptedModel, say

SCRIPT = Path(__file__).parents[2] / "deploy" / "postgres" / "partition_steps_usage.sql"


def partition(url: str) -> None:
    """Run the script as its header says (one transaction), in the schema of `url`."""
    with psycopg.connect(url) as conn:  # not autocommit: all of it or nothing
        conn.execute(SCRIPT.read_text())


@pytest.fixture
def store(pg_schema_url: str) -> Iterator[SqlStore]:
    prepared = SqlStore(pg_schema_url)
    prepared.migrate()
    prepared.close()
    partition(pg_schema_url)
    partitioned = SqlStore(pg_schema_url)
    try:
        yield partitioned
    finally:
        partitioned.close()


def _where(url: str, table: str) -> dict[str, int]:
    """Rows of `table` per partition."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT tableoid::regclass::text AS part, COUNT(*) FROM {table} GROUP BY 1"
        ).fetchall()
    return {str(part): int(n) for part, n in rows}


def test_the_tables_are_partitioned_by_month(store: SqlStore) -> None:
    rows = store.conn().execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'rota_steps'"""
    )
    names = {r["relname"] for r in rows}
    month = datetime.now(UTC).strftime("%Y_%m")
    assert {"rota_steps_default", f"rota_steps_p{month}"} <= names
    # Partitions ahead are idempotent: the cron line makes only what is missing.
    assert store.conn().execute("SELECT rota_add_partitions(now(), 3) AS n")[0]["n"] == 0


def test_existing_rows_move_and_rota_runs_on_partitions(pg_schema_url: str) -> None:
    app = App(pg_schema_url)

    @app.workflow
    async def pipeline(ctx: Any, n: int) -> int:
        first = await ctx.step("one", lambda: n * 2)
        return int(await ctx.step("two", lambda: first + 1))

    def reply(request: ModelRequest, turn: int) -> Any:
        return say("fine")

    model = ScriptedModel("reviewer", fn=reply, tokens=(1000, 200))
    app.agent(Agent("reviewer", model, "Review.", price=Price(input=3, output=15)))
    try:
        before = [app.run_now("pipeline", n) for n in range(3)]
        app.drain()
        results = [h.result() for h in before]
        app.close()
        partition(pg_schema_url)  # rows written before the script move with it
        app = App(pg_schema_url)
        app.workflow(pipeline)
        app.agent(Agent("reviewer", model, "Review.", price=Price(input=3, output=15)))
        after = [app.run_now("pipeline", n) for n in range(3, 6)]
        agent = app.run_now("reviewer", "look")
        app.drain()
        assert results + [h.result() for h in after] == [1, 3, 5, 7, 9, 11]
        assert agent.get().state == RunState.SUCCEEDED
    finally:
        app.close()
    month = f"rota_steps_p{datetime.now(UTC).strftime('%Y_%m')}"
    # 2 steps for each of 6 workflow runs, and the agent's model call: all in this month's.
    assert _where(pg_schema_url, "rota_steps") == {month: 13}
    assert sum(_where(pg_schema_url, "rota_usage").values()) == 1

    store = SqlStore(pg_schema_url)
    try:
        # Retention works on partitioned tables too: everything finished goes.
        report = prune(store, RetentionPolicy(default_s=3600), datetime.now(UTC).timestamp() + 1e7)
        assert report.runs == 7
        assert report.rows["rota_steps"] == 13 and report.rows["rota_usage"] == 1
    finally:
        store.close()
    assert _where(pg_schema_url, "rota_steps") == {}
