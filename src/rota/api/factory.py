"""`create_api(app)`: the Starlette application serving one rota App over HTTP.

Routes come from route modules, each a module with `routes(ctx) -> [Route, ...]`; a new
concern (runs, approvals, costs, the dashboard) is a new module appended to ROUTE_MODULES.
Each endpoint declares its parameters with `@accepts` (api/params.py) and its answer with
`@returns` (api/openapi.py, whose docstring shows how); `/openapi.json` is built from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ..app import App
from . import (
    approvals,
    audit,
    budgets,
    cost,
    dashboard,
    events,
    fire,
    health,
    hooks,
    identity,
    metrics,
    openapi,
    principals,
    routines,
    runs,
    schedules,
    stream,
    tokens,
)
from .context import DB_ERRORS, ApiContext, ApiError, database_unavailable, problem, shown

log = logging.getLogger("rota.api")


class RouteModule(Protocol):
    def routes(self, ctx: ApiContext) -> Sequence[BaseRoute]: ...


ROUTE_MODULES: tuple[RouteModule, ...] = (
    health,
    hooks,
    identity,
    approvals,
    openapi,
    metrics,
    runs,
    fire,
    events,
    stream,
    schedules,
    audit,
    principals,
    tokens,
    cost,
    budgets,
    routines,
    dashboard,  # last: its pages at / and /login, /audit, ... (api/dashboard/)
)


def create_api(
    app: App, *, modules: Sequence[RouteModule] = ROUTE_MODULES, db_threads: int = 4
) -> Starlette:
    """The API for `app`. `db_threads` bounds the store connections the API holds at once."""
    ctx = ApiContext(app, db_threads=db_threads)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:  # waits for store calls in flight: off the loop, which a worker may share
            await asyncio.get_running_loop().run_in_executor(None, ctx.close)

    api = Starlette(
        routes=[route for module in modules for route in module.routes(ctx)],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            ApiError: _api_error,
            **dict.fromkeys(DB_ERRORS, _database_error),
            Exception: _internal_error,
        },
    )
    api.state.rota = ctx
    return api


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON, in the shape every other answer has."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = exc.detail
    if exc.status_code == 404:
        message = (
            f"nothing at {shown(request.url.path)}; webhooks are delivered to POST /hooks/{{name}}"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {shown(request.url.path)}"
    return problem(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        message,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    """A route refused the request (`raise BadRequest(...)`, `Denied`, ...)."""
    assert isinstance(exc, ApiError)
    return exc.response()


async def _database_error(request: Request, exc: Exception) -> Response:
    """A store call failed and the route had nothing more specific to say: the caller's
    input was checked before it reached the store, so this is ours, not the caller's."""
    return database_unavailable(request, exc, headers={"Retry-After": "5"})


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: JSON like every other answer, and no traceback to the caller. Starlette
    re-raises the exception after this, so the server logs it in full."""
    return problem(500, "internal_error", "the request failed; the server log says why")
