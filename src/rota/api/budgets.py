"""`GET /api/budgets` (viewer): each shared budget the app declares (`app.budget(...)`) with
its limits, and what it has spent and holds in its current period (rota.cost.budgets).

Spent is what recorded model calls cost; held is the worst case of calls in flight, which
the store counts against the limit until each call is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..cost.budgets import budget_status
from .answers import answer
from .auth import authorize
from .context import ApiContext, context
from .cursors import cursor, page, shaped
from .openapi import returns
from .params import accepts, read_query, whole_number
from .schemas import Out


class BudgetUnits(Out):
    usd: str | None = pydantic.Field(description="A decimal string; null: not limited")
    tokens: int | None
    requests: int | None


class BudgetOut(Out):
    key: str
    scope: str = pydantic.Field(description="agent, workflow or principal")
    name: str
    per: str = pydantic.Field(description="day or month (UTC)")
    period: str
    period_start: str | None
    period_end: str | None
    limit: BudgetUnits
    spent: BudgetUnits
    held: BudgetUnits


class BudgetPage(Out):
    items: list[BudgetOut]
    next_cursor: str | None


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/api/budgets", list_budgets, methods=["GET"])]


@returns(BudgetPage)
@accepts(query={"limit": whole_number(1, 1000, default=100), "cursor": cursor()})
async def list_budgets(request: Request) -> Response:
    """Shared budgets with their limits, spent and held in the current period (viewer)."""
    await authorize(request, "viewer")
    query = read_query(request)
    after = shaped(query["cursor"], str, str)
    ctx = context(request)
    declared = sorted(ctx.app.budgets, key=lambda b: (b.key, b.per))
    chosen, more = page(declared, lambda b: (b.key, b.per), after, query["limit"])
    now = ctx.app.clock.now()
    found = await ctx.db(lambda: [budget_status(ctx.app.store, b, now) for b in chosen])
    return answer(BudgetPage, {"items": [s.to_json() for s in found], "next_cursor": more})
