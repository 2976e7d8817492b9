"""What differs between SQLite and PostgreSQL, kept behind one small class each.

The store writes its SQL once, with `:name` parameters and a few `{hooks}`; a dialect turns
that into what its driver runs and opens connections configured the way rota relies on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseError, StoreUnavailable
from .urls import DatabaseUrl, pool_mode

if TYPE_CHECKING:
    import psycopg

LISTEN_URL_ENV = "ROTA_LISTEN_DATABASE_URL"

Row = dict[str, Any]
WAKE_CHANNEL = "rota_wake"


class Connection:
    """One driver connection: plain statements autocommit; `transaction()` groups them.

    A driver error that a later try may not meet (a dropped connection, a server that is
    restarting, a locked SQLite file) is raised as StoreUnavailable, caused by it; mistakes
    (bad SQL, a violated constraint) keep the driver's own error."""

    def __init__(self, dialect: Dialect, raw: Any) -> None:
        self.dialect = dialect
        self.raw = raw

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            cur = self.raw.execute(self.dialect.render(sql), params or {})
            self.rowcount = cur.rowcount
            return list(cur.fetchall()) if cur.description else []
        except _driver_errors() as exc:
            raise_if_unavailable(exc)
            raise

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        try:
            cur = self.raw.cursor()
            cur.executemany(self.dialect.render(sql), rows)
            return int(cur.rowcount)
        except _driver_errors() as exc:
            raise_if_unavailable(exc)
            raise

    def copy(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """`COPY ... FROM STDIN` (PostgreSQL), each row a tuple in the statement's columns."""
        try:
            with self.raw.cursor().copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except _driver_errors() as exc:
            raise_if_unavailable(exc)
            raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:  # BEGIN and COMMIT can meet a dropped connection too
            with self.dialect.transaction(self.raw):
                yield self
        except _driver_errors() as exc:
            raise_if_unavailable(exc)
            raise

    def close(self) -> None:
        self.raw.close()

    def __del__(self) -> None:
        # The thread that owned this connection ended: close it rather than leak it.
        with contextlib.suppress(Exception):
            self.raw.close()


def _driver_errors() -> tuple[type[BaseException], ...]:
    """What the drivers raise for trouble with the database rather than with the statement.
    psycopg's errors only once psycopg is loaded (by the first PostgreSQL connection): until
    then none of them can have been raised, and a SQLite-only process never imports it."""
    pg = sys.modules.get("psycopg")
    if pg is None:
        return (sqlite3.OperationalError,)
    return (sqlite3.OperationalError, pg.OperationalError, pg.InterfaceError)


# PostgreSQL error classes that pass: connection exceptions (08), serialization failures and
# deadlocks (40), insufficient resources (53), operator intervention such as a shutdown or a
# restart (57), system errors such as I/O (58); and a lock not available now (55P03). Not a
# statement_timeout (57014): the same statement would time out again.
_PG_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
_PG_UNAVAILABLE_STATES = {"55P03"}
_PG_LASTING_STATES = {"57014"}
# SQLite's primary result codes for a busy or locked database, an I/O error, a full disk,
# a file it cannot open and a locking protocol error (sqlite3.OperationalError also reports
# SQL mistakes, e.g. "no such table", which are not retried).
_SQLITE_UNAVAILABLE = {5, 6, 10, 13, 14, 15}
_SQLITE_UNAVAILABLE_TEXT = ("database is locked", "database table is locked", "disk i/o error")


def unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database is unavailable for now (a later try may
    work) rather than that the statement is wrong."""
    pg = sys.modules.get("psycopg")  # None: a SQLite-only process, no psycopg error
    if pg is not None and isinstance(exc, pg.InterfaceError):
        return True  # the connection is closed or lost
    if pg is not None and isinstance(exc, pg.OperationalError):
        state: str | None = exc.sqlstate
        if state is None:  # raised by the client: connection refused, lost, closed
            return True
        if state in _PG_LASTING_STATES:
            return False
        return state[:2] in _PG_UNAVAILABLE_CLASSES or state in _PG_UNAVAILABLE_STATES
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_UNAVAILABLE
        return any(text in str(exc).lower() for text in _SQLITE_UNAVAILABLE_TEXT)
    return False


def raise_if_unavailable(exc: BaseException) -> None:
    if unavailable(exc):
        raise StoreUnavailable.from_driver(exc) from exc


class Dialect(ABC):
    name = ""
    # Row-locking clauses; empty on SQLite, whose IMMEDIATE transactions lock the database.
    skip_locked = ""
    row_lock = ""
    share_lock = ""
    arrays = False  # array parameters and unnest() for one-statement batch updates
    probe_before_claim = False  # read before claiming (SQLite: claims take the write lock)

    def __init__(self, url: DatabaseUrl) -> None:
        self.url = url

    @abstractmethod
    def connect(self) -> Connection: ...

    def render(self, sql: str) -> str:
        return sql

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    @abstractmethod
    def any_of(self, column: str, param: str) -> str: ...

    def insert_many(
        self,
        conn: Connection,
        table: str,
        columns: Mapping[str, str],
        rows: Sequence[Mapping[str, Any]],
        *,
        fixed: str = "",
        suffix: str = "",
    ) -> None:
        """INSERT many rows. `columns` maps each column to its PostgreSQL type; `fixed` is
        a literal prefix of columns and values (e.g. a constant state); `suffix` an
        ON CONFLICT clause."""
        names = ", ".join(columns)
        fixed_cols, _, fixed_vals = fixed.partition("=")
        values = ", ".join(f":{c}" for c in columns)
        conn.execute_many(
            f"INSERT INTO {table} ({_join(fixed_cols, names)}) "
            f"VALUES ({_join(fixed_vals, values)}) {suffix}",
            rows,
        )

    def copy_rows(
        self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """INSERT many rows given as tuples in `columns` order, with no conflict clause:
        the fastest bulk load the database has (COPY on PostgreSQL)."""
        self.insert_many(
            conn,
            table,
            dict.fromkeys(columns, ""),
            [dict(zip(columns, r, strict=True)) for r in rows],
        )

    def update_many(
        self,
        conn: Connection,
        table: str,
        key: str,
        columns: Mapping[str, str],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """UPDATE rows matched on `key` (a column of `columns`) with the other columns."""
        sets = ", ".join(f"{c} = :{c}" for c in columns if c != key)
        conn.execute_many(f"UPDATE {table} SET {sets} WHERE {key} = :{key}", rows)

    @abstractmethod
    def transaction(self, raw: Any) -> Any: ...

    @abstractmethod
    def table_exists(self, conn: Connection, table: str) -> bool: ...

    @abstractmethod
    def lock(self, conn: Connection, name: str, *, shared: bool = False) -> None:
        """Serialise a critical section across processes until the transaction ends;
        `shared` holders exclude only exclusive ones."""

    @abstractmethod
    def notify(self, conn: Connection) -> None:
        """Hint waiting workers that runs are ready (a hint only: workers also poll)."""


class SQLiteDialect(Dialect):
    """Embedded default: WAL for concurrent readers, IMMEDIATE transactions so that writers
    queue on the busy timeout instead of failing on lock upgrades."""

    name = "sqlite"
    probe_before_claim = True

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
            error = StoreUnavailable if unavailable(exc) else DatabaseError
            raise error(f"cannot open SQLite database {path!r}: {exc}") from None
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
        if raw.in_transaction:  # nested: a savepoint inside the outer one, as psycopg does
            raw.execute("SAVEPOINT rota_nested")
            try:
                yield
            except BaseException:
                raw.execute("ROLLBACK TO rota_nested")
                raw.execute("RELEASE rota_nested")
                raise
            raw.execute("RELEASE rota_nested")
            return
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")

    def lock(self, conn: Connection, name: str, *, shared: bool = False) -> None:
        """Nothing to take: an IMMEDIATE transaction already holds the database's one write
        lock until it ends."""

    def notify(self, conn: Connection) -> None:
        """No NOTIFY on SQLite: its workers poll."""


class PostgresDialect(Dialect):
    """Many workers on many machines: SKIP LOCKED claims, advisory locks, NOTIFY wake-ups."""

    name = "postgresql"
    skip_locked = "FOR UPDATE SKIP LOCKED"
    row_lock = "FOR UPDATE"
    share_lock = "FOR SHARE"
    arrays = True

    def connect(self) -> Connection:
        # Behind PgBouncer in transaction mode, the next statement may run on another server
        # connection, where a statement psycopg prepared does not exist: prepare none.
        import psycopg  # noqa: PLC0415  # heavy: the PostgreSQL driver, loaded by the first PostgreSQL connection
        from psycopg.rows import dict_row  # noqa: PLC0415  # heavy: the PostgreSQL driver, loaded by the first PostgreSQL connection

        prepare = {"prepare_threshold": None} if self.url.pool == "transaction" else {}
        try:
            raw = psycopg.connect(
                self.url.target,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=10,
                **prepare,
            )
        except psycopg.OperationalError as exc:
            # Unavailable for now (a restart, a failover) as far as rota can tell; at start
            # a wrong address or password fails the same way, and says so.
            reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.url.redacted()}: {reason or 'no answer'}"
            ) from None
        return Connection(self, raw)

    def render(self, sql: str) -> str:
        return _pyformat(sql)

    def any_of(self, column: str, param: str) -> str:
        return f"{column} = ANY(:{param})"

    def insert_many(
        self,
        conn: Connection,
        table: str,
        columns: Mapping[str, str],
        rows: Sequence[Mapping[str, Any]],
        *,
        fixed: str = "",
        suffix: str = "",
    ) -> None:
        # One statement over arrays: far less client and server work than a row at a time.
        if not rows:
            return
        fixed_cols, _, fixed_vals = fixed.partition("=")
        cols = ", ".join(columns)
        arrays = ", ".join(f":{c}!b::{t}[]" for c, t in columns.items())
        conn.execute(
            f"INSERT INTO {table} ({_join(fixed_cols, cols)}) "
            f"SELECT {_join(fixed_vals, cols)} FROM unnest({arrays}) AS u({cols}) {suffix}",
            {c: [row[c] for row in rows] for c in columns},
        )

    def copy_rows(
        self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        # COPY: about a third less server time than INSERT ... SELECT FROM unnest for 1,000
        # new runs, and no array encoding in the client.
        if rows:
            conn.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN", rows)

    def update_many(
        self,
        conn: Connection,
        table: str,
        key: str,
        columns: Mapping[str, str],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        if not rows:
            return
        ordered = sorted(rows, key=lambda r: r[key])  # lock rows in key order: no deadlocks
        cols = ", ".join(columns)
        arrays = ", ".join(f":{c}!b::{t}[]" for c, t in columns.items())
        sets = ", ".join(f"{c} = u.{c}" for c in columns if c != key)
        conn.execute(
            f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS u({cols}) "
            f"WHERE t.{key} = u.{key}",
            {c: [row[c] for row in ordered] for c in columns},
        )

    def transaction(self, raw: psycopg.Connection) -> Any:
        return raw.transaction()

    def table_exists(self, conn: Connection, table: str) -> bool:
        # to_regclass follows search_path, like the unqualified names rota uses.
        return conn.execute("SELECT to_regclass(:t) AS t", {"t": table})[0]["t"] is not None

    def lock(self, conn: Connection, name: str, *, shared: bool = False) -> None:
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        conn.execute(f"SELECT {fn}(hashtext(:name))", {"name": name})

    def notify(self, conn: Connection) -> None:
        conn.execute(f"NOTIFY {WAKE_CHANNEL}")

    def listen_on(self) -> psycopg.Connection:
        """A separate autocommit connection for LISTEN (user channels, see on_notify)."""
        import psycopg  # noqa: PLC0415  # heavy: the PostgreSQL driver, loaded by the first PostgreSQL connection

        return psycopg.connect(self.listen_target(), autocommit=True, connect_timeout=10)

    def listen(self) -> psycopg.Connection:
        import psycopg  # noqa: PLC0415  # heavy: the PostgreSQL driver, loaded by the first PostgreSQL connection

        raw = psycopg.connect(self.listen_target(), autocommit=True)
        raw.execute(f"LISTEN {WAKE_CHANNEL}")
        return raw

    def listen_target(self) -> str:
        """Where LISTEN connects: $ROTA_LISTEN_DATABASE_URL (a direct connection, or a
        session-mode pool), else the store's URL. A LISTEN through a transaction-mode pool
        would hear nothing (its server connection goes back to the pool at once), so such a
        URL without the variable is refused: workers then poll, and on_notify says why."""
        direct = os.environ.get(LISTEN_URL_ENV, "").strip()
        if direct:
            return pool_mode(f"postgresql://{direct.partition('://')[2]}", direct)[0]
        if self.url.pool == "transaction":
            raise DatabaseError(
                f"LISTEN cannot go through PgBouncer in transaction mode ({self.url.redacted()});"
                f" set {LISTEN_URL_ENV} to a direct PostgreSQL URL for wake-ups and on_notify"
            )
        return self.url.target


def _join(*parts: str) -> str:
    return ", ".join(p.strip() for p in parts if p.strip())


def dialect_for(url: DatabaseUrl) -> Dialect:
    return SQLiteDialect(url) if url.dialect == "sqlite" else PostgresDialect(url)


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)(!b)?")


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """`:name` -> `%(name)s` (`:name!b` -> `%(name)b`) for psycopg, leaving `::casts`
    alone."""
    return _PARAM.sub(_placeholder, sql.replace("%", "%%"))


def _placeholder(match: re.Match[str]) -> str:
    # `:name!b` sends the value in binary: much cheaper for long arrays of text.
    return f"%({match.group(1)}){'b' if match.group(2) else 's'}"
