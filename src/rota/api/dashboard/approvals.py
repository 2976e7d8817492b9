"""`/approvals`: the Approvals inbox. Each pending request with what is asked, by which run,
the run's recent reasoning and its cost so far; approve or reject with a comment for the
people who may decide it (`approver:<group>` of one of its groups, or admin: the store's
rule, checked again when the decision is recorded); the decided and timed-out history.

Deciding here is what `POST /api/approvals/{id}/approve|reject` does: the store records the
decision, audits it (via "dashboard") and queues the run, which resumes.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ApprovalNotFound, ApprovalRefused
from ...storage.approval_records import MAX_COMMENT
from ..context import ApiContext, ApiError, context, shown
from ..params import accepts, free_text, one_of, path_id, read_query
from .approvals_cards import HISTORY, inbox
from .forms import blank_is_none
from .guard import Form, Viewer, action, page
from .render import NavEntry, render

NAV = NavEntry("Approvals", "/approvals", "a", 30)
DECISION_FIELDS = frozenset({"comment"})


def routes(ctx: ApiContext) -> Sequence[BaseRoute]:
    return [
        Route("/approvals", approvals_page, methods=["GET"], include_in_schema=False),
        Route("/approvals/{id}/approve", approve, methods=["POST"], include_in_schema=False),
        Route("/approvals/{id}/reject", reject, methods=["POST"], include_in_schema=False),
    ]


@page("")  # any principal: one that is not a viewer sees only what it may decide
@accepts(query={"history": blank_is_none(one_of((*HISTORY, "all"), default="all"))})
async def approvals_page(request: Request, viewer: Viewer) -> Response:
    """The inbox: pending requests, and the history (all decided, or one status)."""
    shown_history = read_query(request)["history"] or "all"
    statuses = HISTORY if shown_history == "all" else (shown_history,)
    ctx = context(request)
    found = await ctx.db(inbox, ctx.app.store, viewer.principal, statuses)
    return render(
        request,
        "approvals.html",
        inbox=found,
        history_filter=shown_history,
        history_choices=("all", *HISTORY),
        max_comment=MAX_COMMENT,
    )


@action("")  # who may decide is the request's rule, checked by the store
async def approve(request: Request, viewer: Viewer, form: Form) -> Response:
    """Approve a pending request with an optional comment; back to the inbox."""
    return await _decide(request, viewer, form, approve=True)


@action("")
async def reject(request: Request, viewer: Viewer, form: Form) -> Response:
    """Reject a pending request with an optional comment; back to the inbox."""
    return await _decide(request, viewer, form, approve=False)


async def _decide(request: Request, viewer: Viewer, form: Form, *, approve: bool) -> Response:
    approval_id = path_id(request, "id", "an approval")
    form.pop("csrf", None)  # sent as the header too, by htmx: checked by the guard
    unknown = sorted(set(form) - DECISION_FIELDS)
    if unknown:
        raise ApiError(
            400,
            "bad_request",
            f"unknown form field '{shown(unknown[0])}': a decision takes only a comment",
        )
    comment = free_text("comment", form.get("comment"), max_len=MAX_COMMENT)
    ctx = context(request)
    try:
        await ctx.db(
            lambda: ctx.app.store.decide_approval(
                approval_id,
                viewer.name,
                approve,
                comment,
                ctx.app.clock.now(),
                via="dashboard",
            )
        )
    except ApprovalNotFound:
        raise ApiError(404, "not_found", f"no approval request {approval_id}") from None
    except ApprovalRefused as exc:
        status = 403 if exc.state == "forbidden" else 409
        raise ApiError(status, exc.state, str(exc)) from None
    ctx.app._wake_local()  # a worker in this process (rota dev) resumes the run at once
    return RedirectResponse("/approvals", status_code=303)
