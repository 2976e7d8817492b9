"""Shared fixtures: every storage-facing test runs on SQLite and on PostgreSQL.

PostgreSQL tests use ROTA_TEST_POSTGRES_URL (default: the local server) and a fresh schema
per test. Without a server they skip with a clear message, except when ROTA_REQUIRE_POSTGRES
is set (CI), where they fail.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

import pinned_prices
from rota import App
from rota.cost import catalog
from rota.redaction import redactor
from rota.storage import SqlStore

PG_URL = os.environ.get("ROTA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = bool(os.environ.get("ROTA_REQUIRE_POSTGRES"))
_pg_error: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    _cache_bytecode_for_subprocesses()


def _cache_bytecode_for_subprocesses() -> None:
    """Hundreds of tests start `rota` or another Python child process. With
    PYTHONDONTWRITEBYTECODE set (as on the CI machine) each child compiled every rota module
    it imports again, about a quarter of its start-up. The children now write and reuse
    their bytecode in one directory outside the checkout (PYTHONPYCACHEPREFIX), so the tree
    stays as clean as that setting keeps it. Only the children: this process has started.
    """
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return
    prefix = Path(tempfile.gettempdir()) / f"rota-tests-pycache-{os.getuid()}"
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(prefix))


def _pg_reachable() -> str | None:
    if not _pg_error:
        try:
            psycopg.connect(PG_URL, connect_timeout=5).close()
            _pg_error.append("")
        except psycopg.Error as exc:
            _pg_error.append(str(exc).strip() or type(exc).__name__)
    return _pg_error[0] or None


def require_postgres() -> None:
    error = _pg_reachable()
    if error is None:
        return
    message = f"PostgreSQL tests need a server at {PG_URL} (set ROTA_TEST_POSTGRES_URL): {error}"
    if REQUIRE_PG:
        pytest.fail(message + " -- ROTA_REQUIRE_POSTGRES is set, so this is a failure")
    pytest.skip(message)


@contextmanager
def _fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        # Schema 14's trigram index needs pg_trgm, one per database: installed into a test's
        # own schema, that test's teardown would drop it under every other test's index.
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema, dropped afterwards."""
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rota.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per test module, on each database, for tests that only read what the
    module's fixture set up (a fresh schema costs PostgreSQL about 0.3 s of migrations)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'rota.db'}"
        return
    with _fresh_pg_schema() as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    s = SqlStore(database_url)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    a = App(database_url)
    yield a
    a.close()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """The redactor is process-wide by design; a test's secret values must not redact the
    text of the tests after it."""
    yield
    redactor.clear()


@pytest.fixture(autouse=True)
def _pinned_price_catalogue(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """List prices come from the tests' own catalogue, not the installed genai-prices data,
    which changes with every release (see pinned_prices.py). Tests marked `bundled_prices`
    read the installed data and compare rota with genai-prices' own calculation."""
    if request.node.get_closest_marker("bundled_prices"):
        return
    monkeypatch.setattr(catalog, "_snapshot", lambda: pinned_prices.SNAPSHOT)
    monkeypatch.setattr(catalog, "version", lambda: pinned_prices.VERSION)
