"""The SQL store for SQLite and PostgreSQL. SQL is written once; see dialects.py for hooks."""

from __future__ import annotations

import logging

from ..errors import DatabaseError, SchemaVersionError
from . import schema
from .agent_cache import AgentCacheQueries
from .alerts import AlertQueries
from .approvals import ApprovalQueries
from .audit import AuditQueries
from .base import Store
from .capped import CappedQueries
from .dashboard import DashboardQueries
from .dialects import Connection
from .gauges import GaugeQueries
from .history import HistoryQueries
from .limits import LimitQueries
from .principals import PrincipalQueries
from .retention import RetentionQueries
from .runs import RunQueries
from .schedules import ScheduleQueries
from .secrets import SecretQueries
from .shadow import ShadowQueries
from .usage import UsageQueries
from .waits import WaitQueries

log = logging.getLogger(__name__)


class SqlStore(
    RetentionQueries,  # first: it extends AuditQueries and HistoryQueries
    RunQueries,
    AlertQueries,
    ScheduleQueries,
    LimitQueries,
    SecretQueries,
    ApprovalQueries,
    WaitQueries,
    PrincipalQueries,
    AuditQueries,
    UsageQueries,
    HistoryQueries,
    ShadowQueries,
    AgentCacheQueries,
    GaugeQueries,
    DashboardQueries,
    CappedQueries,
):
    """Every query mixin over one SqlBase (storage/connection.py: the URL, the dialect and
    thread-safe per-thread connections), and the schema. Thread-safe: each thread uses its own
    connection."""

    # -- schema ------------------------------------------------------------------------

    def schema_version(self) -> int:
        """0 for an empty database; reading it never writes."""
        conn = self.conn()
        if not self.dialect.table_exists(conn, "rota_meta"):
            return 0
        rows = conn.execute("SELECT value FROM rota_meta WHERE key = 'schema_version'")
        return int(rows[0]["value"]) if rows else 0

    def migrate(self) -> tuple[int, int]:
        with self.tx() as conn:
            self.dialect.lock(conn, "rota_migrate")
            conn.execute(schema.META_TABLE)
            current = self.schema_version()
            _refuse_newer(current)
            for migration in schema.MIGRATIONS:
                if migration.version > current:
                    for statement in migration.statements:
                        conn.execute(statement)
                    if self.dialect.name == "postgresql" and migration.postgresql_optional:
                        _optional(conn, migration)
            if current < schema.LATEST_VERSION:
                conn.execute(
                    "INSERT INTO rota_meta (key, value) VALUES ('schema_version', :v) "
                    "ON CONFLICT (key) DO UPDATE SET value = :v",
                    {"v": str(schema.LATEST_VERSION)},
                )
        return current, schema.LATEST_VERSION

    def check_schema(self) -> None:
        current = self.schema_version()
        _refuse_newer(current)
        if current < schema.LATEST_VERSION:
            raise SchemaVersionError(
                f"the database at {self.url.redacted()} has schema version {current}, this rota "
                f"needs {schema.LATEST_VERSION}: run `rota db migrate`"
            )


def _optional(conn: Connection, migration: schema.Migration) -> None:
    """Steps the schema works without (an index that needs an extension): in a savepoint, so
    that their failure leaves the migration's transaction usable."""
    import psycopg  # noqa: PLC0415  # heavy: the PostgreSQL driver (these steps are PostgreSQL's)

    try:
        with conn.transaction():
            for statement in migration.postgresql_optional:
                conn.execute(statement)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        log.warning(
            "schema %d (%s): skipped its optional PostgreSQL step: %s",
            migration.version,
            migration.description,
            reason,
        )


def _refuse_newer(current: int) -> None:
    if current > schema.LATEST_VERSION:
        raise SchemaVersionError(
            f"the database schema is version {current}, newer than this rota understands "
            f"({schema.LATEST_VERSION}); upgrade rota instead of migrating down"
        )


def open_store(url: str | None = None) -> SqlStore:
    """Open a store and fail fast, with a clear message, when it cannot be reached."""
    store = SqlStore(url)
    try:
        store.conn()
    except DatabaseError:
        store.close()
        raise
    return store


def _conforms(store: SqlStore) -> Store:
    return store  # mypy: SqlStore implements Store
