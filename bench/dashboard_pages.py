"""The dashboard's Runs page over 1,000,000 runs and the Run page of a 2,000-step agent run,
on PostgreSQL, through a real HTTP server (uvicorn on loopback, as `rota serve` runs it):
time to first byte and to the last byte of each page, median and p95 of N requests after two
warm-ups.

    .venv/bin/python -m bench.dashboard_pages [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--runs 1000000] [--requests 20] [--explain]

It creates a scratch database next to the one `--dsn` names and drops it afterwards. Runs are
inserted with one INSERT ... SELECT over generate_series (not through rota): 50 job names, 5
principals, a third agent runs, 1% FAILED with an error text, 0.1% WAITING, ids time-ordered
like rota's. The long agent run is made from a real one: a scripted agent run through rota
records its model and tool steps and their metering, and those rows are copied to 1,000 model
calls and 999 tool calls of one run (COPY). `--explain` prints the plans of the list queries.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from rota import Agent, App, ToolContext, tool
from rota.api.dashboard.sessions import SESSION_COOKIE, mint_login_code
from rota.api.server import ApiServer
from rota.cost import Price
from rota.model import RunFilter
from rota.testing import ScriptedModel, answer, call

T0 = 1.7e9
MODEL_CALLS = 1000  # 1,000 model steps and 999 tool steps: a 1,999-step agent run
LONG_RUN = "01ffffff-0000-7000-8000-000000002000"  # sorts after every generated id


@tool
def lookup(ctx: ToolContext, customer_id: str) -> str:
    """Look up a customer."""
    return f"plan of {customer_id}: gold, renewed 2026-01-31, 14 seats, no open invoices"


def fill_runs(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO rota_runs (id, name, kind, state, payload, error, trigger, principal,
                run_after, created_at, started_at, finished_at)
            SELECT lpad(to_hex(i), 12, '0') || '-0000-7000-8000-000000000000',
                'job_' || (i % 50), CASE WHEN i % 3 = 0 THEN 'agent' ELSE 'job' END,
                CASE WHEN i % 100 = 0 THEN 'FAILED' WHEN i % 1000 = 1 THEN 'WAITING'
                    ELSE 'SUCCEEDED' END,
                '{{"n": ' || i || '}}',
                CASE WHEN i % 100 = 0
                    THEN '{{"type": "RuntimeError", "message": "disk full ' || i || '"}}' END,
                CASE WHEN i % 7 = 0 THEN 'schedule' ELSE 'manual' END, 'svc-' || (i % 5),
                {T0} + i, {T0} + i, {T0} + i + 0.5, {T0} + i + 1
            FROM generate_series(1, {rows}) i"""
        )


def long_agent_run(app: App, url: str) -> str:
    """A real 3-call agent run, copied into one run of MODEL_CALLS model calls."""

    def decide(request: Any, turn: int) -> Any:
        return call(lookup, customer_id=f"c{turn}") if turn < 3 else answer("all looked up")

    model = ScriptedModel("bench-long", fn=decide)
    app.agent(Agent("long", model, "Look every customer up.", tools=[lookup], price=Price(3, 15)))
    template = app.run_now("long", {"customers": 1000})
    app.drain()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE long_run AS SELECT * FROM rota_runs WHERE id = %s", [template.id]
        )
        conn.execute("UPDATE long_run SET id = %s, finished_at = started_at + 600", [LONG_RUN])
        conn.execute("INSERT INTO rota_runs SELECT * FROM long_run")
        _copy_rows(conn, "rota_steps", template.id, "started_at", "finished_at")
        _copy_rows(conn, "rota_usage", template.id, "at", None)
    return LONG_RUN


def _copy_rows(
    conn: psycopg.Connection[Any], table: str, run_id: str, at: str, end: str | None
) -> None:
    """Copy the template's model#2 and tool:lookup#2 rows of `table` to every model call
    and tool call of the long run, spaced 0.3 s apart."""
    cursor = conn.execute(f"SELECT * FROM {table} WHERE run_id = %s", [run_id])
    columns = [c.name for c in cursor.description or ()]
    rows = {row[columns.index("step_key")]: list(row) for row in cursor.fetchall()}
    made = []
    for n in range(1, MODEL_CALLS + 1):
        for key, source in ((f"model#{n}", "model#2"), (f"tool:lookup#{n}", "tool:lookup#2")):
            if source not in rows or (key.startswith("tool") and n == MODEL_CALLS):
                continue
            row = list(rows[source])
            row[columns.index("run_id")] = LONG_RUN
            row[columns.index("step_key")] = key
            offset = 0.3 * (2 * n + (1 if key.startswith("tool") else 0))
            start = float(rows[source][columns.index(at)]) + offset
            row[columns.index(at)] = start
            if end is not None:
                row[columns.index(end)] = start + 0.25
            if "seq" in columns:
                row[columns.index("seq")] = 2 * (n - 1) + (1 if key.startswith("tool") else 0)
            made.append(row)
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in made:
            copy.write_row(row)


def timed_get(host: str, port: int, path: str, cookie: str) -> tuple[float, float, int, int]:
    """(ms to the first byte of the body, ms to the last, status, bytes) of one GET."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        start = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        answer_ = conn.getresponse()
        first = answer_.read(1)
        ttfb = time.perf_counter() - start
        body = first + answer_.read()
        full = time.perf_counter() - start
        return 1000 * ttfb, 1000 * full, answer_.status, len(body)
    finally:
        conn.close()


def sign_in(app: App, host: str, port: int) -> str:
    code = mint_login_code(app.store, "bench", app.clock.now())
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", f"/login/once?code={code}")
    answer_ = conn.getresponse()
    answer_.read()
    for header, value in answer_.getheaders():
        if header.lower() == "set-cookie" and value.startswith(f"{SESSION_COOKIE}="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise SystemExit(f"signing in failed: {answer_.status}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def explain(url: str, deep_cursor: str) -> None:
    queries = {
        "first page": ("SELECT * FROM rota_runs WHERE 1 = 1 ORDER BY id DESC LIMIT 51", []),
        "state + name, no match": (
            "SELECT * FROM rota_runs WHERE state = ANY(%s) AND name = ANY(%s) "
            "ORDER BY id DESC LIMIT 51",
            [["FAILED"], ["job_7"]],
        ),
        "name + state + principal, no match": (
            "SELECT * FROM rota_runs WHERE name = ANY(%s) AND state = ANY(%s) "
            "AND principal = ANY(%s) ORDER BY id DESC LIMIT 51",
            [["job_0"], ["SUCCEEDED"], ["svc-3"]],
        ),
        "deep page": (
            "SELECT * FROM rota_runs WHERE id < %s ORDER BY id DESC LIMIT 51",
            [deep_cursor],
        ),
    }
    with psycopg.connect(url) as conn:
        for label, (sql, params) in queries.items():
            plan = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params).fetchall()
            print(f"-- {label}\n" + "\n".join(row[0] for row in plan), end="\n\n")


def scratch_url(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="print the list queries' plans")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    database = f"rota_bench_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    url = scratch_url(args.dsn, database)
    app = App(url)
    try:
        app.principal("bench", kind="user", roles=["viewer"])
        app.store.schema_version()  # migrated, principals synced
        started = time.perf_counter()
        fill_runs(url, args.runs)
        long_id = long_agent_run(app, url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
        print(
            f"seeded {args.runs:,} runs and a {2 * MODEL_CALLS - 1}-step agent run "
            f"in {time.perf_counter() - started:.0f} s"
        )
        middle = app.store.list_runs(
            RunFilter(limit=1, until=T0 + args.runs // 2, since=T0 + args.runs // 2 - 1)
        )
        deep = middle[0].id if middle else long_id
        if args.explain:
            explain(url, deep)
        measure(app, long_id, deep, args.requests)
    finally:
        app.close()
        if args.keep:
            print(f"kept {url}")
        else:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def measure(app: App, long_id: str, deep: str, requests: int) -> None:
    server = ApiServer(app, port=0)
    server.bind()
    thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    host, port = server.host, server.port
    try:
        cookie = sign_in(app, host, port)
        pages = {
            "`/runs` first page": "/runs",
            "`/runs?state=FAILED` (1% of runs)": "/runs?state=FAILED",
            "`/runs?name=job_7&kind=agent`": "/runs?name=job_7&kind=agent",
            "`/runs?kind=agent&principal=svc-1&trigger=manual`": (
                "/runs?kind=agent&principal=svc-1&trigger=manual"
            ),
            "`/runs?cursor=...` (page 10,000: keyset)": f"/runs?cursor={deep}",
            "`/runs?q=disk+full+99` (error text)": "/runs?q=disk+full+99",
            "`/runs?state=FAILED&name=job_7` (matches none of 10,000 failed)": (
                "/runs?state=FAILED&name=job_7"
            ),
            "`/runs?name=job_0&state=SUCCEEDED&principal=svc-3` (matches none)": (
                "/runs?name=job_0&state=SUCCEEDED&principal=svc-3"
            ),
            "run page, 1,999-step agent run": f"/runs/{long_id}",
            "its trace (fetched after the page)": f"/runs/{long_id}/trace",
            "its steps 101-300 (on scroll)": f"/runs/{long_id}/steps?after=99",
        }
        print(f"\n{requests} requests each, after 2 warm-ups\n")
        print("| page | first byte, median ms | p95 | full page, median ms | p95 | KiB |")
        print("|---|---|---|---|---|---|")
        for label, path in pages.items():
            firsts, fulls, size = [], [], 0
            for i in range(requests + 2):
                first, full, status, size = timed_get(host, port, path, cookie)
                assert status == 200, (path, status)
                if i >= 2:
                    firsts.append(first)
                    fulls.append(full)
            print(
                f"| {label} | {statistics.median(firsts):.1f} | {p95(firsts):.1f} | "
                f"{statistics.median(fulls):.1f} | {p95(fulls):.1f} | {size / 1024:.0f} |"
            )
    finally:
        server.stop()
        thread.join(timeout=30)


if __name__ == "__main__":
    main()
