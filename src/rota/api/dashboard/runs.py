"""`/runs`: the runs, newest first, filtered by name, kind, state, principal, trigger, time
(`since`, `until`) and text in the error (`q`): the query the overview's links send. Pages
are keyset pages over the API's own query (`cursor`: the last id of the page above), so a
deep page costs what the first does. The list refreshes live over the event stream.
`state=dropped` lists the runs a cap dropped instead (storage/capped.py).

`POST /runs/bulk` cancels or retries the ticked runs (operator; CSRF as every action). Each
run is tried on its own: one that cannot be cancelled or retried is reported and the others
still are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...errors import InvalidStateError, RunNotFound
from ...storage.audit import AuditEntry
from ...storage.capped import DROPPED
from ..context import ApiContext, ApiError, context, shown
from ..params import accepts, an_id, instant, one_of, read_query, text_filter
from ..runs import KINDS, STATES, one_value, runs_filter
from .forms import blank_is_none
from .guard import Form, Viewer, action, page
from .render import NavEntry, render

NAV = NavEntry("Runs", "/runs", "r", 10)
PAGE_SIZE = 50
MAX_BULK = PAGE_SIZE  # at most a page of runs at once
PICK = "pick-"  # a ticked run's form field: pick-<run id>
FILTERS = ("name", "kind", "state", "principal", "trigger", "since", "until", "q")
BULK_ACTIONS = ("cancel", "retry")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/runs", runs_list, methods=["GET"], include_in_schema=False),
        Route("/runs/bulk", bulk, methods=["POST"], include_in_schema=False),
    ]


@page("viewer")
@accepts(
    query={
        "name": text_filter(),
        "kind": one_of((*KINDS, ""), default=""),
        "state": one_of((*STATES, DROPPED, ""), default=""),
        "principal": text_filter(),
        "trigger": text_filter(),
        "since": blank_is_none(instant()),
        "until": blank_is_none(instant()),
        "q": text_filter(),
        "cursor": blank_is_none(an_id("the run id an 'older' link gave")),
    }
)
async def runs_list(request: Request, viewer: Viewer) -> Response:
    """The Runs page."""
    q = read_query(request)
    if q["state"] == DROPPED:
        return await _dropped(request, q)
    flt = runs_filter(q, limit=PAGE_SIZE + 1, error_text=q["q"])  # one more: an older page?
    ctx = context(request)
    runs = await ctx.db(lambda: ctx.app.store.list_runs(flt))
    shown_runs, more = runs[:PAGE_SIZE], len(runs) > PAGE_SIZE
    given = request.query_params
    filters = {k: given[k] for k in FILTERS if given.get(k)}
    here = "/runs" + (f"?{request.url.query}" if request.url.query else "")
    return render(
        request,
        "runs.html",
        runs=shown_runs,
        filters=filters,
        kinds=KINDS,
        states=(*STATES, DROPPED),
        here=here,
        dropped=None,
        next_link=_link({**filters, "cursor": shown_runs[-1].id}) if more else None,
        first_link=_link(filters) if q["cursor"] else None,
        defined=sorted(ctx.app.definitions),
    )


DROPPED_FILTERS = ("name", "since")


async def _dropped(request: Request, q: dict[str, Any]) -> Response:
    """`state=dropped`: the newest runs a cap dropped (they never became runs, so they are
    kept apart: storage/capped.py), with their reasons."""
    other = [k for k in FILTERS if k not in (*DROPPED_FILTERS, "state") and q[k] not in (None, "")]
    if other or q["cursor"]:
        extra = ", ".join(other or ["cursor"])
        raise ApiError(
            400,
            "bad_request",
            f"state=dropped takes only the filters name and since; remove {extra}",
        )
    ctx = context(request)
    names = one_value(q["name"])
    dropped = await ctx.db(
        lambda: ctx.app.store.capped_runs(names, DROPPED, PAGE_SIZE, since=q["since"])
    )
    given = request.query_params
    return render(
        request,
        "runs.html",
        runs=[],
        dropped=dropped,
        filters={k: given[k] for k in FILTERS if given.get(k)},
        kinds=KINDS,
        states=(*STATES, DROPPED),
        here="/runs" + (f"?{request.url.query}" if request.url.query else ""),
        next_link=None,
        first_link=None,
        defined=sorted(ctx.app.definitions),
        page_size=PAGE_SIZE,
    )


def _link(query: dict[str, str]) -> str:
    return "/runs" + (f"?{urlencode(query)}" if query else "")


@dataclass(frozen=True)
class Outcome:
    """What a bulk action did to one run."""

    run_id: str
    done: bool
    message: str


@action("operator")
async def bulk(request: Request, viewer: Viewer, form: Form) -> Response:
    """Cancel or retry the ticked runs, each on its own, and say what happened to each."""
    verb, ids, back = _bulk_form(form)
    ctx = context(request)
    store, now = ctx.app.store, ctx.app.clock.now()
    act = store.cancel if verb == "cancel" else store.retry
    outcomes = []
    for run_id in ids:
        try:
            run = await ctx.db(act, run_id, now)
            outcomes.append(Outcome(run_id, True, f"{run.name}: now {run.state.value.lower()}"))
        except RunNotFound:
            outcomes.append(Outcome(run_id, False, "no such run"))
        except InvalidStateError as exc:
            outcomes.append(Outcome(run_id, False, str(exc)))
    done = [o.run_id for o in outcomes if o.done]
    if done:
        await ctx.db(lambda: store.audit_many(_audit(viewer, verb, done, now)))
    ctx.app._wake_local()  # a worker in this process (rota dev) sees it at once
    return render(request, "runs_bulk.html", verb=verb, outcomes=outcomes, back=back)


def _audit(viewer: Viewer, verb: str, ids: list[str], now: float) -> list[AuditEntry]:
    action_name = "run.cancelled" if verb == "cancel" else "run.retried"
    kind = viewer.principal.actor_kind
    return [
        AuditEntry(viewer.name, action_name, kind, f"run {i}", i, {"via": "dashboard"}, now)
        for i in ids
    ]


def _bulk_form(form: Form) -> tuple[str, list[str], str]:
    """(cancel | retry, the ticked run ids, the list to go back to); BadRequest naming the
    field for anything else."""
    verb = form.pop("action", "")
    if verb not in BULK_ACTIONS:
        raise ApiError(
            400, "bad_request", f"form field action must be one of {', '.join(BULK_ACTIONS)}"
        )
    back = form.pop("back", "/runs")
    if not back.startswith("/runs") or back.startswith("//") or len(back) > 2000:
        raise ApiError(400, "bad_request", "form field back must be a /runs address")
    ids = []
    for name in form:
        run_id = name.removeprefix(PICK)
        if not name.startswith(PICK) or not _ID.fullmatch(run_id):
            raise ApiError(
                400,
                "bad_request",
                f"unknown form field '{shown(name)}': this form takes action, back and "
                f"{PICK}<run id> for each ticked run",
            )
        ids.append(run_id)
    if not ids:
        raise ApiError(400, "bad_request", "tick at least one run first")
    if len(ids) > MAX_BULK:
        raise ApiError(400, "bad_request", f"tick at most {MAX_BULK} runs at once")
    return verb, ids, back
