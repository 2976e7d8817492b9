"""What every route module shares: the rota App, threads for its blocking store calls, and
one shape for error responses."""

from __future__ import annotations

import asyncio
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
from ..errors import DatabaseError

T = TypeVar("T")

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

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call off the event loop.

        On a fixed pool of our own rather than anyio's: the store keeps one connection per
        thread, and anyio retires idle threads, which would leave their connections open
        and unused. Reach the store inside `fn` (it opens, and may migrate, on first use)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), partial(fn, *args))

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
