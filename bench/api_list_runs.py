"""`GET /api/runs` over 1,000,000 stored runs on PostgreSQL: the time to answer one filtered
page (50 runs) through the HTTP API, per filter, median of 7 after one warm-up request.

    .venv/bin/python -m bench.api_list_runs [--dsn postgresql://...] [--explain] [--without-index]

Rows are inserted with one INSERT ... SELECT (not through rota), into a schema of their own
that is dropped afterwards: 50 job names, 5 principals, a third agent runs, 1% FAILED with an
error text, 0.1% WAITING. Run ids are time-ordered like rota's own. `--explain` prints the
plan of the error-text query first; `--without-index` drops the trigram index (schema 14).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from urllib.parse import quote

import psycopg
from starlette.testclient import TestClient

from rota import App
from rota.api import create_api
from rota.identity import admin, tokens

ROWS = 1_000_000
T0 = 1.7e9
FILTERS = {
    "no filter": {},
    "name": {"name": "job_7"},
    "state=FAILED": {"state": "FAILED"},
    "state=WAITING": {"state": "WAITING"},
    "kind + principal": {"kind": "agent", "principal": "svc-1"},
    "since/until (100 s window)": {
        "since": "2023-11-20T16:00:00Z",
        "until": "2023-11-20T16:01:40Z",
    },
    "name, page 100 (cursor)": {"name": "job_7"},  # the cursor is filled in below
    "error text": {"error": "disk full 99"},
    "error text, every failed run": {"error": "disk full"},
    "error text, one run": {"error": "Disk Full 500000"},
    "error text, no run": {"error": "disk full 1234567"},
}


def fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO rota_runs (id, name, kind, state, payload, error, trigger, principal,
                run_after, created_at, started_at, finished_at)
            SELECT lpad(to_hex(i), 12, '0') || '-0000-7000-8000-000000000000',
                'job_' || (i % 50), CASE WHEN i % 3 = 0 THEN 'agent' ELSE 'job' END,
                CASE WHEN i % 100 = 0 THEN 'FAILED' WHEN i % 1000 = 1 THEN 'WAITING'
                    ELSE 'SUCCEEDED' END,
                '{{}}',
                CASE WHEN i % 100 = 0
                    THEN '{{"type": "RuntimeError", "message": "disk full ' || i || '"}}' END,
                CASE WHEN i % 7 = 0 THEN 'schedule' ELSE 'manual' END, 'svc-' || (i % 5),
                {T0} + i, {T0} + i, {T0} + i + 0.5, {T0} + i + 1
            FROM generate_series(1, {ROWS}) i"""
        )
        # What autovacuum does after a million inserts; it also moves the rows still in the
        # trigram index's pending list (GIN fastupdate) into the index proper.
        conn.execute("VACUUM ANALYZE rota_runs")


def explain(url: str) -> None:
    # The listing's query for ?error= (storage/runs.py), as PostgreSQL runs it.
    with psycopg.connect(url) as conn:
        plan = conn.execute(
            r"""EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM rota_runs WHERE 1 = 1
            AND LOWER(error) LIKE %s ESCAPE '\' ORDER BY id DESC LIMIT 50""",
            ["%disk full 99%"],
        ).fetchall()
    print("\n".join(row[0] for row in plan), end="\n\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of the error-text query"
    )
    parser.add_argument(
        "--without-index",
        action="store_true",
        help="drop the trigram index first (what a role that may not create pg_trgm gets)",
    )
    args = parser.parse_args()
    dsn = args.dsn
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{dsn}?options={quote(f'-csearch_path={schema}')}"
    app = App(url)
    try:
        app.principal("bench", roles=["viewer"])
        app.store.schema_version()  # migrated, principals synced
        if args.without_index:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP INDEX IF EXISTS rota_runs_error_trgm")
        fill(url)
        if args.explain:
            explain(url)
        token = tokens.issue(app.store, "bench", admin.Actor("bench", "human")).token
        auth = {"Authorization": f"Bearer {token}"}
        with TestClient(create_api(app)) as client:
            page = client.get("/api/runs", params={"name": "job_7", "limit": 50}, headers=auth)
            for _ in range(99):
                cursor = page.json()["next_cursor"]
                page = client.get(
                    "/api/runs",
                    params={"name": "job_7", "limit": 50, "cursor": cursor},
                    headers=auth,
                )
            FILTERS["name, page 100 (cursor)"]["cursor"] = page.json()["next_cursor"]
            print("| filter | median ms | runs |\n|---|---|---|")
            for label, query in FILTERS.items():
                times, found = [], 0
                for i in range(8):
                    start = time.perf_counter()
                    answer = client.get("/api/runs", params={**query, "limit": 50}, headers=auth)
                    if i:  # the first is the warm-up
                        times.append(1000 * (time.perf_counter() - start))
                    assert answer.status_code == 200, answer.text
                    found = len(answer.json()["items"])
                print(f"| {label} | {statistics.median(times):.1f} | {found} |")
    finally:
        app.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
