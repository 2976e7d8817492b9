"""`SqlBase`: the store's URL, dialect and per-thread connections, the base class of every
`*Queries` mixin and so of SqlStore."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from .dialects import Connection, Dialect, dialect_for
from .urls import DatabaseUrl, resolve


class SqlBase:
    """Thread-safe: each thread uses its own connection, closed when the thread ends (so that
    short-lived threads calling the store do not pile up connections) or at close()."""

    def __init__(self, url: str | DatabaseUrl | None = None) -> None:
        self.url = url if isinstance(url, DatabaseUrl) else resolve(url)
        self.dialect: Dialect = dialect_for(self.url)
        self._local = threading.local()
        self._all: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._guard = threading.Lock()

    def conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(conn.raw, "closed", False):
            # psycopg marks a connection the server dropped (restart, failover) as closed; it
            # never works again, so open a new one instead of failing every call from now on.
            with self._guard:
                self._all.discard(conn)
            conn = None
        if conn is None:
            conn = self.dialect.connect()
            self._local.conn = conn
            with self._guard:
                self._all.add(conn)
        return conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.conn().transaction() as conn:
            yield conn

    def close(self) -> None:
        with self._guard:
            for conn in list(self._all):
                with contextlib.suppress(Exception):  # a broken connection must not hide why
                    conn.close()
            self._all.clear()
        self._local = threading.local()
