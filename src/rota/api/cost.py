"""Costs over HTTP (viewer), as `rota cost report|compare --json`, through rota.cost:

- `GET /api/cost/report?since=30d&until=&by=workflow`: tokens, sessions, compute and USD of
  the runs that started in [since, until), per group;
- `POST /api/cost/compare`: the same history billed under each plan of the body, which
  takes what a plan file holds (`{"plans": [{"kind": "api", ...}]}`), checked the same way
  with the same messages.

Prices are the bundled list prices with the server's $ROTA_PRICES overrides (a caller cannot
name a file on the server). Money is a decimal string at full precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..cost.compare import compare
from ..cost.history import History, load_history
from ..cost.plans import Plan, plans_document
from ..cost.prices import PriceOverride
from ..cost.pricing import configured_overrides
from ..cost.records import GroupBy, report
from ..cost.summary import compare_json, report_json
from ..durations import ago_or_time
from ..errors import ConfigError, UnknownPrice
from .answers import answer
from .auth import authorize
from .context import ApiContext, ApiError, context, shown
from .openapi import returns
from .params import BadRequest, Param, accepts, one_of, read_body, read_query
from .schemas import Out

log = logging.getLogger("rota.api")
T = TypeVar("T")

GROUPS: tuple[str, ...] = GroupBy.__args__  # type: ignore[attr-defined]
_LAST = 253_370_764_800.0  # 9999-01-01: later times do not fit a datetime with an offset
_MOMENT = "a duration ago (30d, 12h) or an ISO 8601 time (2026-01-31T09:00:00Z)"
MAX_PLANS = 50


class CostRow(Out):
    key: str
    runs: int
    requests: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    tool_calls: int
    session_seconds: str
    compute_seconds: str
    tokens_usd: str
    compute_usd: str
    total_usd: str


class CostReport(Out):
    since: str
    until: str
    rows: list[CostRow]


class PlanBreakdown(Out):
    fees: str
    tokens: str
    sessions: str
    compute: str
    overage: str


class CappedRunOut(Out):
    run_id: str
    name: str
    started_at: str
    limit: str


class ForecastBasis(Out):
    days: int
    from_: str = pydantic.Field(alias="from")
    to: str


class PlanForecast(Out):
    days: int
    total_usd: str | None
    refused: str | None = None
    low_usd: str | None = None
    high_usd: str | None = None
    slope_usd_per_day: str | None = None
    basis: ForecastBasis | None = None


class PlanCost(Out):
    name: str
    kind: str
    total_usd: str
    breakdown: PlanBreakdown
    monthly: dict[str, str]
    dropped: list[CappedRunOut]
    overage_runs: list[CappedRunOut]
    forecast: PlanForecast


class CostComparison(Out):
    since: str
    until: str
    runs: int
    ai_runs: int
    cheapest: str
    cheapest_complete: str | None
    plans: list[PlanCost]


class CompareBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    plans: list[Any]  # plan tables, as in a plan file: checked by rota.cost.plans
    since: str = "30d"
    until: str | None = None


def _checked_moment(raw: str) -> str:
    """A query parameter that is a time, checked now and resolved by the route (against the
    app's clock, which tests fake)."""
    _parse_moment(raw, datetime.now(UTC).timestamp())
    return raw


def _moment(field: str, text: str, now: float) -> float:
    """A time the caller sent; a 400 naming the field otherwise."""
    try:
        return _parse_moment(text, now)
    except ValueError:
        raise BadRequest(
            f"{field} must be {_MOMENT}, from 1970 to 9998; got '{shown(text)}'"
        ) from None


def _parse_moment(text: str, now: float) -> float:
    if len(text) > 40:
        raise ValueError(text)
    try:
        at = ago_or_time(text, now)
    except ConfigError:
        raise ValueError(text) from None
    if not 0 <= at < _LAST:
        raise ValueError(text)
    return at


def moment() -> Param:
    """A query parameter that is a time: a duration ago, or an ISO time."""
    return Param(_checked_moment, _MOMENT, None, {"type": "string", "maxLength": 40})


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/api/cost/report", cost_report, methods=["GET"]),
        Route("/api/cost/compare", cost_compare, methods=["POST"]),
    ]


@returns(CostReport, errors=(422,))
@accepts(
    query={
        "since": moment(),  # default: 30d
        "until": moment(),  # default: now
        "by": one_of(GROUPS, default="workflow"),
    }
)
async def cost_report(request: Request) -> Response:
    """What the runs started in [since, until) cost, per group (viewer)."""
    await authorize(request, "viewer")
    query = read_query(request)
    ctx = context(request)
    now = ctx.app.clock.now()
    since = _moment("since", query["since"] or "30d", now)
    until = None if query["until"] is None else _moment("until", query["until"], now)
    history = await ctx.db(lambda: _history(ctx, since, until))
    rows = _priced(lambda: report(history.records, history.table, by=cast(GroupBy, query["by"])))
    return answer(CostReport, report_json(history, rows))


@returns(CostComparison, errors=(422,))
@accepts(body=CompareBody)
async def cost_compare(request: Request) -> Response:
    """Bill the recorded history under each plan of the body; the cheapest wins (viewer)."""
    await authorize(request, "viewer")
    read_query(request)
    body: CompareBody = await read_body(request)
    if not 0 < len(body.plans) <= MAX_PLANS:
        raise BadRequest(f"plans must hold 1 to {MAX_PLANS} plan tables; got {len(body.plans)}")
    try:
        plans = plans_document({"plans": body.plans}, "the body")
    except ConfigError as exc:
        raise BadRequest(shown(str(exc), 800)) from None
    _distinct_names(plans)
    ctx = context(request)
    now = ctx.app.clock.now()
    since = _moment("since", body.since, now)
    until = None if body.until is None else _moment("until", body.until, now)
    history = await ctx.db(lambda: _history(ctx, since, until))
    result = _priced(lambda: compare(plans, history.records, history.table, window=history.window))
    return answer(CostComparison, compare_json(history, result))


# -- helpers -------------------------------------------------------------------------------


def _distinct_names(plans: Sequence[Plan]) -> None:
    """Refuse two plans of one name here: `compare` refuses them too, but as a ConfigError,
    which is the caller's mistake only at this boundary (a 400, not a 500)."""
    names = [plan.name for plan in plans]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise BadRequest(
            f"the body: two plans are named '{shown(duplicate, 100)}'; give each plan its own name"
        )


def _history(ctx: ApiContext, since: float, until: float | None) -> History:
    end = ctx.app.clock.now() if until is None else until
    if not since < end:
        raise BadRequest(
            f"since ({_iso(since)}) must be before until ({_iso(end)}); both are {_MOMENT}"
        )
    overrides = server_price_overrides("cost")
    start_at, end_at = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(end, UTC)
    return _priced(lambda: load_history(ctx.app.store, start_at, end_at, overrides))


def server_price_overrides(where: str) -> list[PriceOverride]:
    """The server's $ROTA_PRICES overrides; when they do not load, a 503 (the server's
    settings are wrong, not the caller's request) and the reason in the log, tagged `where`."""
    try:
        return configured_overrides()
    except ConfigError as exc:
        log.warning("%s: the price overrides in $ROTA_PRICES do not load: %s", where, exc)
        raise ApiError(
            503,
            "misconfigured",
            "the server's price overrides ($ROTA_PRICES) do not load; the server log says why",
        ) from None


def _priced(compute: Callable[[], T]) -> T:
    """`compute()`, with a model that has no known price as a 422 naming it."""
    try:
        return compute()
    except UnknownPrice as exc:
        raise ApiError(422, "unknown_price", shown(str(exc), 600)) from None


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
