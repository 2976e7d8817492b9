"""The error-text filter of the run listing: right matches in keyset order on both databases,
and on PostgreSQL the trigram index of schema 14 (used by the planner; its absence when the
extension may not be created leaves the migration and the filter working)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest

from rota.model import RunFilter
from rota.storage import SqlStore
from rota.storage import schema as schema_mod

ROWS = 3000
T0 = 1.7e9


def fill(store: SqlStore) -> None:
    # Every 10th run failed; its error is JSON text like the store's own.
    rows = [
        {
            "id": f"{i:012x}-0000-7000-8000-000000000000",
            "name": f"job_{i % 5}",
            "state": "FAILED" if i % 10 == 0 else "SUCCEEDED",
            "error": (
                f'{{"type": "RuntimeError", "message": "Disk FULL {i} 100%_x"}}'
                if i % 10 == 0
                else None
            ),
            "at": T0 + i,
        }
        for i in range(1, ROWS + 1)
    ]
    store.conn().execute_many(
        """INSERT INTO rota_runs (id, name, kind, state, payload, error, trigger, run_after,
            created_at)
        VALUES (:id, :name, 'job', :state, '{}', :error, 'manual', :at, :at)""",
        rows,
    )


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    s = SqlStore(database_url)
    s.migrate()
    fill(s)
    yield s
    s.close()


def expected(text: str) -> list[int]:
    return sorted(
        (i for i in range(10, ROWS + 1, 10) if text.lower() in f"disk full {i} 100%_x"),
        reverse=True,
    )


def numbers(runs: list) -> list[int]:
    return [int(r.id[:12], 16) for r in runs]


@pytest.mark.parametrize("text", ["disk full 29", "DISK full 1", "100%_x", "full 3000 "])
def test_matches_case_insensitively_newest_first_in_keyset_pages(
    store: SqlStore, text: str
) -> None:
    want = expected(text)
    assert want  # every case matches something
    got: list[int] = []
    flt = RunFilter(error_text=text, limit=7)
    while True:
        page = store.list_runs(flt)
        got += numbers(page)
        if len(page) < flt.limit:
            break
        flt = dataclasses.replace(flt, before_id=page[-1].id)
    assert got == want
    assert all(r.error is not None for r in store.list_runs(RunFilter(error_text=text)))


def test_wildcards_in_the_text_match_themselves(store: SqlStore) -> None:
    assert store.list_runs(RunFilter(error_text="disk_full")) == []
    assert store.list_runs(RunFilter(error_text="disk%full")) == []
    assert numbers(store.list_runs(RunFilter(error_text="0 100%_x", limit=3))) == [
        3000,
        2990,
        2980,
    ]


def test_combines_with_other_filters(store: SqlStore) -> None:
    got = numbers(store.list_runs(RunFilter(error_text="disk full 2", names=("job_0",))))
    assert got == [i for i in expected("disk full 2") if i % 5 == 0][:50]
    assert got


def pg_only(store: SqlStore) -> None:
    if store.dialect.name != "postgresql":
        pytest.skip("the trigram index is PostgreSQL's")


def trigram_index(store: SqlStore) -> str | None:
    rows = store.conn().execute(
        """SELECT indexdef FROM pg_indexes
        WHERE schemaname = current_schema() AND indexname = 'rota_runs_error_trgm'"""
    )
    return rows[0]["indexdef"] if rows else None


def test_postgres_has_the_trigram_index_and_the_planner_uses_it(store: SqlStore) -> None:
    pg_only(store)
    assert "gin_trgm_ops" in (trigram_index(store) or "")
    assert "lower(error)" in (trigram_index(store) or "")
    with store.tx() as conn:
        conn.execute("ANALYZE rota_runs")
        # A few thousand rows are cheaper to read in id order; what is asserted is that the
        # index fits the query's expression (bench/api_list_runs.py shows 1M runs use it).
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_indexscan = off")
        # The listing's own query (storage/runs.py), as PostgreSQL receives it.
        plan = conn.execute(
            r"""EXPLAIN SELECT * FROM rota_runs WHERE 1 = 1
            AND LOWER(error) LIKE :text ESCAPE '\' ORDER BY id DESC LIMIT 50""",
            {"text": "%disk full 29%"},
        )
    text = "\n".join(row["QUERY PLAN"] for row in plan)
    assert "rota_runs_error_trgm" in text, text


def test_without_the_extension_migration_logs_once_and_the_filter_works(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = SqlStore(database_url)
    pg_only(s)
    # What a role without the privilege meets: CREATE EXTENSION fails.
    failing = tuple(
        dataclasses.replace(m, postgresql_optional=("CREATE EXTENSION no_such_ext_rota_test",))
        if m.postgresql_optional
        else m
        for m in schema_mod.MIGRATIONS
    )
    monkeypatch.setattr(schema_mod, "MIGRATIONS", failing)
    try:
        with caplog.at_level(logging.WARNING, logger="rota.storage.sql"):
            assert s.migrate() == (0, schema_mod.LATEST_VERSION)
        skipped = [r for r in caplog.records if "skipped its optional" in r.getMessage()]
        assert len(skipped) == 1
        assert "schema 14" in skipped[0].getMessage()
        assert s.schema_version() == schema_mod.LATEST_VERSION
        assert trigram_index(s) is None
        fill(s)
        assert numbers(s.list_runs(RunFilter(error_text="disk full 29"))) == expected(
            "disk full 29"
        )
    finally:
        s.close()
