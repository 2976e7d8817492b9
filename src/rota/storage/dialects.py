"""What differs between SQLite and PostgreSQL, kept behind one small class each.

The store writes its SQL once, with `:name` parameters and a few `{hooks}`; a dialect turns
that into what its driver runs and opens connections configured the way rota relies on.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..errors import DatabaseError
from .urls import DatabaseUrl

Row = dict[str, Any]
WAKE_CHANNEL = "rota_wake"


class Connection:
    """One driver connection: plain statements autocommit; `transaction()` groups them."""

    def __init__(self, dialect: Dialect, raw: Any) -> None:
        self.dialect = dialect
        self.raw = raw

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        cur = self.raw.execute(self.dialect.render(sql), params or {})
        self.rowcount = cur.rowcount
        return list(cur.fetchall()) if cur.description else []

    def execute_many(self, sql: str, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        cur = self.raw.cursor()
        cur.executemany(self.dialect.render(sql), rows)
        return cur.rowcount

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.dialect.transaction(self.raw):
            yield self

    def close(self) -> None:
        self.raw.close()

    def __del__(self) -> None:
        # The thread that owned this connection ended: close it rather than leak it.
        with contextlib.suppress(Exception):
            self.raw.close()


class Dialect:
    name = ""
    # Row-locking clauses; empty on SQLite, whose IMMEDIATE transactions lock the database.
    skip_locked = ""
    row_lock = ""
    share_lock = ""
    arrays = False  # array parameters and unnest() for one-statement batch updates

    def __init__(self, url: DatabaseUrl) -> None:
        self.url = url

    def connect(self) -> Connection:
        raise NotImplementedError

    def render(self, sql: str) -> str:
        return sql

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def any_of(self, column: str, param: str) -> str:
        raise NotImplementedError

    def transaction(self, raw: Any) -> Any:
        raise NotImplementedError

    def table_exists(self, conn: Connection, table: str) -> bool:
        raise NotImplementedError

    def lock(self, conn: Connection, name: str) -> None:
        """Serialise a critical section across processes until the transaction ends."""

    def notify(self, conn: Connection) -> None:
        """Hint waiting workers that runs are ready (a hint only: workers also poll)."""


class SQLiteDialect(Dialect):
    """Embedded default: WAL for concurrent readers, IMMEDIATE transactions so that writers
    queue on the busy timeout instead of failing on lock upgrades."""

    name = "sqlite"

    def __init__(self, url: DatabaseUrl, busy_timeout_s: float = 30.0) -> None:
        super().__init__(url)
        self.busy_timeout_s = busy_timeout_s

    def connect(self) -> Connection:
        path = self.url.target
        if path != ":memory:" and not Path(path).parent.exists():
            raise DatabaseError(f"cannot open SQLite database {path!r}: its folder does not exist")
        try:
            raw = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_s
            )
            raw.row_factory = _dict_factory
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open SQLite database {path!r}: {exc}") from None
        return Connection(self, raw)

    def list_param(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def any_of(self, column: str, param: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(:{param}))"

    def table_exists(self, conn: Connection, table: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t"
        return bool(conn.execute(query, {"t": table}))

    @contextmanager
    def transaction(self, raw: sqlite3.Connection) -> Iterator[None]:
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")


class PostgresDialect(Dialect):
    """Many workers on many machines: SKIP LOCKED claims, advisory locks, NOTIFY wake-ups."""

    name = "postgresql"
    skip_locked = "FOR UPDATE SKIP LOCKED"
    row_lock = "FOR UPDATE"
    share_lock = "FOR SHARE"
    arrays = True

    def connect(self) -> Connection:
        try:
            raw = psycopg.connect(
                self.url.target, autocommit=True, row_factory=dict_row, connect_timeout=10
            )
        except psycopg.OperationalError as exc:
            reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {self.url.redacted()}: {reason or 'no answer'}"
            ) from None
        return Connection(self, raw)

    def render(self, sql: str) -> str:
        return _pyformat(sql)

    def any_of(self, column: str, param: str) -> str:
        return f"{column} = ANY(:{param})"

    def transaction(self, raw: psycopg.Connection) -> Any:
        return raw.transaction()

    def table_exists(self, conn: Connection, table: str) -> bool:
        # to_regclass follows search_path, like the unqualified names rota uses.
        return conn.execute("SELECT to_regclass(:t) AS t", {"t": table})[0]["t"] is not None

    def lock(self, conn: Connection, name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(:name))", {"name": name})

    def notify(self, conn: Connection) -> None:
        conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    def listen_on(self) -> psycopg.Connection:
        """A separate autocommit connection for LISTEN (user channels, see on_notify)."""
        return psycopg.connect(self.url.target, autocommit=True, connect_timeout=10)

    def listen(self) -> psycopg.Connection:
        raw = psycopg.connect(self.url.target, autocommit=True)
        raw.execute(f"LISTEN {WAKE_CHANNEL}")
        return raw


def dialect_for(url: DatabaseUrl) -> Dialect:
    return SQLiteDialect(url) if url.dialect == "sqlite" else PostgresDialect(url)


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """`:name` -> `%(name)s` for psycopg, leaving `::casts` alone."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
