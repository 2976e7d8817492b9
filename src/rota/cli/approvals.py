"""`rota approvals list|approve|reject`: the human side of `ctx.approval` and gated tools.

Who decides from a terminal: the principal named by `--as`, by default the principal whose
name is the person at the terminal (ROTA_ACTOR, else the OS user). It must hold the role
`approver:<group>` for one of the request's groups, or `admin`. The CLI talks to the
database directly, so it trusts its user the way `rota principals` does (whoever can run
it with the database URL can act as anyone); the audit record keeps both the principal and
the terminal user. Deciding over HTTP (`POST /api/approvals/{id}/approve`) authenticates
the principal with its API token instead.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..clock import system_clock
from ..identity import admin
from ..storage.approval_records import PENDING, ApprovalRequest, check_comment
from ..storage.base import ApprovalStore
from .common import JsonFlag, err, print_json, print_table, read_store, report, when

approvals_app = typer.Typer(
    help="List pending approval requests and approve or reject them.", no_args_is_help=True
)

ApprovalId = Annotated[str, typer.Argument(help="The request's id (see `rota approvals list`).")]
Comment = Annotated[
    str | None, typer.Option("--comment", "-m", help="Why; the run (or the agent) sees it.")
]
As = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="PRINCIPAL",
        help="Decide as this principal. [default: the principal named like you: ROTA_ACTOR, "
        "else your OS user]",
    ),
]


@approvals_app.command("list")
def list_approvals(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Decided, timed-out and expired ones too.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Pending requests (with --all: every request), newest first."""
    with read_store(ctx) as store:
        found = store.approvals(statuses=() if show_all else (PENDING,), limit=limit)
    if as_json:
        print_json([r.to_json() for r in found])
        return
    if not found:
        err.print("no pending approval requests" if not show_all else "no approval requests")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "question", "who may decide", "deadline (UTC)", "status", "run"):
        table.add_column(column, no_wrap=column in ("id", "status"))
    for r in found:
        table.add_row(
            r.id, _question(r), r.who_may_decide(), when(r.deadline), _status(r), r.run_id
        )
    print_table(table)


@approvals_app.command("approve")
def approve(
    ctx: typer.Context,
    approval_id: ApprovalId,
    comment: Comment = None,
    as_: As = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a pending request; its run resumes."""
    _decide(ctx, approval_id, True, comment, as_, as_json)


@approvals_app.command("reject")
def reject(
    ctx: typer.Context,
    approval_id: ApprovalId,
    comment: Comment = None,
    as_: As = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a pending request; its run resumes and sees the rejection (and the comment)."""
    _decide(ctx, approval_id, False, comment, as_, as_json)


def _decide(
    ctx: typer.Context,
    approval_id: str,
    approve: bool,
    comment: str | None,
    as_: str | None,
    as_json: bool,
) -> None:
    text = check_comment(comment)
    terminal = admin.cli_actor()
    with read_store(ctx) as store:
        decided = decide(store, approval_id, as_ or terminal.name, approve, text, terminal.name)
    verb = "approved" if approve else "rejected"
    message = (
        f"{verb} {decided.id} as {decided.decided_by}: run {decided.run_id} "
        f"({decided.run_name}) resumes"
    )
    report(as_json, decided.to_json(), message)


def decide(
    store: ApprovalStore,
    approval_id: str,
    principal: str,
    approve: bool,
    comment: str | None,
    terminal_user: str,
) -> ApprovalRequest:
    return store.decide_approval(
        approval_id,
        principal,
        approve,
        comment,
        system_clock.now(),
        via="cli",
        note={"terminal_user": terminal_user},
    )


def _question(r: ApprovalRequest) -> str:
    tool = r.context.get("tool") if isinstance(r.context, dict) else None
    text = _cut(r.question, 80)
    return f"{text} [{tool}]" if tool and tool not in text else text


def _status(r: ApprovalRequest) -> str:
    if r.status == PENDING:
        return PENDING
    by = f" by {r.decided_by}" if r.decided_by else ""
    note = f": {_cut(r.comment, 40)}" if r.comment else ""
    return f"{r.status}{by}{note}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
