"""`/audit`: the audit log, newest first, filtered by actor, action and time, in keyset pages
(`before`: the last seq of the page above), with the hash chain's verification status."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...identity.audit import verify_chain
from ..context import ApiContext, context
from ..params import Param, accepts, instant, read_query, text_filter
from .forms import blank_is_none, page_after
from .guard import Viewer, page
from .render import NavEntry, render

NAV = NavEntry("Audit", "/audit", "u", 50)
PAGE_SIZE = 50
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?")


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [Route("/audit", audit_log, methods=["GET"], include_in_schema=False)]


def an_action() -> Param:
    def parse(raw: str) -> str | None:
        if not raw:
            return None
        if len(raw) > 100 or not _ACTION.fullmatch(raw):
            raise ValueError(raw)
        return raw

    allowed = "an action such as approval.granted, or a prefix ending in .* (approval.*)"
    return Param(parse, allowed)


@page("viewer")
@accepts(
    query={
        "actor": text_filter(),
        "action": an_action(),
        "since": blank_is_none(instant()),
        "until": blank_is_none(instant()),
        "before": page_after(),
    }
)
async def audit_log(request: Request, viewer: Viewer) -> Response:
    """The audit page."""
    q = read_query(request)
    ctx = context(request)
    store = ctx.app.store
    records = await ctx.db(
        lambda: store.audit_page(
            actor=q["actor"],
            action=q["action"],
            since=q["since"],
            until=q["until"],
            before_seq=q["before"],
            limit=PAGE_SIZE + 1,
        )
    )
    shown, more = records[:PAGE_SIZE], len(records) > PAGE_SIZE
    report = await ctx.db(verify_chain, store)
    given = request.query_params
    filters = {k: given[k] for k in ("actor", "action", "since", "until") if given.get(k)}
    next_link = None
    if more:
        next_link = "/audit?" + urlencode({**filters, "before": shown[-1].seq})
    return render(
        request,
        "audit.html",
        records=shown,
        filters=filters,
        next_link=next_link,
        first_link="/audit?" + urlencode(filters) if q["before"] else None,
        report=report,
    )
