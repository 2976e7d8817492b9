"""What every route module shares: the rota App, threads for its blocking store calls, and
one shape for error responses (`problem`, `ApiError`, `database_unavailable`)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..app import App
from ..errors import DatabaseError, StoreUnavailable
from ..storage.outage import Outage

T = TypeVar("T")

log = logging.getLogger("rota.api")

# What "the database did not answer" looks like: rota's own error (cannot connect) and the
# drivers' errors raised mid-statement. The API answers these with 503: retry later.
DB_ERRORS: tuple[type[BaseException], ...] = (DatabaseError, sqlite3.Error, psycopg.Error)


class ApiContext:
    """One per API instance; route modules reach it with `context(request)`."""

    def __init__(self, app: App, *, db_threads: int = 4) -> None:
        self.app = app
        self.db_threads = db_threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # The database going away logs one line, and one when it is back, not one a request.
        self.outage = Outage(log, "API server")

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call off the event loop.

        On a fixed pool of our own rather than anyio's: the store keeps one connection per
        thread, and anyio retires idle threads, which would leave their connections open
        and unused. Reach the store inside `fn` (it opens, and may migrate, on first use)."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor(), partial(fn, *args))
        if self.outage.down:
            self.outage.worked()
        return result

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.db_threads, thread_name_prefix="rota-api-db")
            return self._pool

    def close(self) -> None:
        """Wait for store calls in flight, then stop the threads (a later call starts anew)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.rota
    return ctx


def problem(
    status: int, error: str, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error the API answers: a machine code in `error`, a sentence in `message`."""
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


class ApiError(Exception):
    """An error answer raised from anywhere in a request; the API turns it into `problem`."""

    def __init__(
        self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers

    def response(self) -> JSONResponse:
        return problem(self.status, self.error, self.message, headers=self.headers)


def database_unavailable(
    request: Request,
    exc: BaseException,
    message: str = "the database did not answer; try again later (the server log says why)",
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """503 for a database error that is not the caller's fault, logged as one line: the
    driver's first line tells an operator what failed, and a stack trace per request would
    bury it (a load balancer polls /healthz every few seconds while the database is down).
    The database being away (StoreUnavailable) is logged once per outage, not per request:
    one line when it goes, one when a store call works again."""
    first_line = next(iter(str(exc).strip().splitlines()), "")
    outage = getattr(getattr(request.app.state, "rota", None), "outage", None)
    if isinstance(exc, StoreUnavailable) and isinstance(outage, Outage):
        outage.failed(exc)
        return problem(503, "database_unavailable", message, headers=headers)
    log.warning(
        "%s %s: the database did not answer: %s: %s",
        request.method,
        shown(request.url.path),
        type(exc).__name__,
        shown(first_line, 200),
    )
    return problem(503, "database_unavailable", message, headers=headers)


def shown(text: str, limit: int = 80) -> str:
    """`text` safe to put in a message or a log line: non-printable characters escaped (as
    repr does, so no line breaks or NULs), cut to `limit` characters so that a 4,000-character
    value is not echoed back."""
    cut = text[:limit]
    escaped = cut if cut.isprintable() else repr(cut)[1:-1]
    return escaped + ("..." if len(text) > limit else "")
