"""`create_api(app)`: the Starlette application serving one rota App over HTTP.

Routes come from route modules, each a module with `routes(ctx) -> [Route, ...]`; a new
concern (runs, approvals, costs, the dashboard) is a new module appended to ROUTE_MODULES.
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
from . import approvals, health, hooks, identity
from .context import ApiContext, problem

log = logging.getLogger("rota.api")


class RouteModule(Protocol):
    def routes(self, ctx: ApiContext) -> Sequence[BaseRoute]: ...


ROUTE_MODULES: tuple[RouteModule, ...] = (health, hooks, identity, approvals)


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
        exception_handlers={HTTPException: _http_error},
    )
    api.state.rota = ctx
    return api


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON, in the shape every other answer has."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = exc.detail
    if exc.status_code == 404:
        message = f"nothing at {request.url.path}; webhooks are delivered to POST /hooks/{{name}}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return problem(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        message,
        headers=dict(exc.headers) if exc.headers else None,
    )
