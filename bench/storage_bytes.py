"""Bytes stored per run, by kind of run, on PostgreSQL and SQLite; and what pruning keeps.

    .venv/bin/python -m bench.storage_bytes [--runs 400] [--json]

For each kind (a job; a workflow of 5 steps; an agent run of 2 model calls and a tool call)
it makes a fresh database, runs `--runs` runs of that kind through a worker, and reads the
space rota's tables take before and after: `pg_total_relation_size` (heap, indexes and
TOAST) of every rota_* table on PostgreSQL, the `dbstat` page sizes of every rota_* table and
index on SQLite. The difference over the runs is the figure (it includes each run's audit
record and every index). Then `prune` with a retention of an hour, a day later: what is left
is the daily cost roll-up (a few rows per day, however many runs) and what the tables keep
when empty (after a plain VACUUM on PostgreSQL; SQLite's free pages are not counted).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from bench.harness import PG, machine, table

from rota import Agent, App, FakeClock, tool
from rota.agents.types import ModelRequest
from rota.cost import Price
from rota.retention import RetentionPolicy, prune
from rota.storage import SqlStore
from rota.testing import ScriptedModel, call, say

KINDS = ("job", "workflow (5 steps)", "agent (2 calls, 1 tool)")


@tool
def lookup(customer: str) -> dict[str, str]:
    """Read a customer's plan."""
    return {"customer": customer, "plan": "pro"}


def build(url: str, clock: FakeClock) -> App:
    app = App(url, clock=clock)

    @app.job
    def job(ctx: Any, n: int) -> dict[str, int]:
        return {"n": n, "double": n * 2}

    @app.workflow
    async def workflow(ctx: Any, n: int) -> int:
        total = 0
        for i in range(5):
            total += int(await ctx.step(f"s{i}", lambda i=i: i + n))
        return total

    def reply(request: ModelRequest, turn: int) -> Any:
        if turn == 1:
            return call(lookup, customer="acme")
        return say("The customer is on the pro plan; nothing to change.")

    model = ScriptedModel("bench", fn=reply, tokens=(1200, 150))
    app.agent(Agent("agent", model, "Check the plan.", tools=[lookup], price=Price(3, 15)))
    return app


def rota_bytes(store: SqlStore) -> int:
    """Space taken by rota's tables and their indexes."""
    if store.dialect.name == "sqlite":
        rows = store.conn().execute(
            """SELECT COALESCE(SUM(pgsize), 0) AS n FROM dbstat
            WHERE name LIKE 'rota_%' OR name LIKE 'sqlite_autoindex_rota_%'"""
        )
    else:
        rows = store.conn().execute(
            """SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS n
            FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
            WHERE c.relkind = 'r' AND c.relname LIKE 'rota_%'
              AND s.nspname = current_schema()"""
        )
    return int(rows[0]["n"])


def reclaim(store: SqlStore) -> None:
    """Give the emptied pages back, as autovacuum would on PostgreSQL (a plain VACUUM cuts
    empty pages off the end of each table); SQLite's dbstat counts no free page."""
    if store.dialect.name == "postgresql":
        for row in store.conn().execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ):
            store.conn().execute(f"VACUUM {row['tablename']}")


@contextmanager
def fresh(dialect: str) -> Iterator[str]:
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG}/postgres?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def measure(dialect: str, kind: str, runs: int) -> dict[str, Any]:
    start = 1_770_000_000.0  # a fixed day, so every run of a case falls on one UTC day
    name = kind.split()[0]
    with fresh(dialect) as url:
        clock = FakeClock(start)
        app = build(url, clock)
        try:
            app.store.migrate()
            empty = rota_bytes(app.store)
            payload: Callable[[int], Any] = (lambda n: "look") if name == "agent" else (lambda n: n)
            for n in range(runs):
                app.run_now(name, payload(n))
            app.drain(concurrency=8)
            full = rota_bytes(app.store)
            # 40 days on: the next month, so agent runs (model usage) may go too.
            report = prune(app.store, RetentionPolicy(default_s=3600), start + 40 * 86_400)
            reclaim(app.store)
            pruned = rota_bytes(app.store)
            rollups = app.store.conn().execute("SELECT COUNT(*) AS n FROM rota_cost_rollup")
        finally:
            app.close()
    return {
        "database": dialect,
        "kind": kind,
        "runs": runs,
        "bytes_per_run": round((full - empty) / runs),
        "pruned_runs": report.runs,
        "rollup_rows": int(rollups[0]["n"]),
        "bytes_after_prune": pruned - empty,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [
        measure(dialect, kind, args.runs) for dialect in args.databases.split(",") for kind in KINDS
    ]
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return
    print(machine())
    headers = ("database", "kind", "runs", "bytes/run", "pruned", "roll-up rows", "left after")
    rows = [
        (
            r["database"],
            r["kind"],
            r["runs"],
            r["bytes_per_run"],
            r["pruned_runs"],
            r["rollup_rows"],
            r["bytes_after_prune"],
        )
        for r in results
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
