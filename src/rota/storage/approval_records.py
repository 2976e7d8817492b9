"""What an approval is: the request as stored, the decision a workflow gets back, and who
may decide.

A request names approver groups; a principal may decide it when it holds the role
`approver:<group>` of one of them, or `admin` (which holds every role). A request that names
no group can be decided by admins only. The store applies these rules, and the CLI, the API
and the workflow context use them too. Checking the approver groups a workflow names is
identity's part (`rota.identity.principals.approver_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import iso
from ..errors import ConfigError
from .principals import Principal

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
EXPIRED = "expired"  # its run stopped waiting without a decision (e.g. cancelled)
STATUSES = (PENDING, APPROVED, REJECTED, TIMED_OUT, EXPIRED)
ON_TIMEOUT = ("reject", "approve", "fail")
FALLBACK = "fallback"  # on_timeout was a step: stored as this word


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One request for a human decision, as stored. `context` is what the approver is
    shown besides the question (for a tool call: the tool, its arguments, the agent's
    reasoning and the cost so far)."""

    id: str
    run_id: str
    step_key: str
    run_name: str
    principal: str | None
    question: str
    context: Any
    approvers: tuple[str, ...]
    on_timeout: str
    status: str
    created_at: float
    deadline: float | None
    decided_by: str | None = None
    decided_at: float | None = None
    comment: str | None = None

    def expired_by(self, now: float) -> bool:
        return self.deadline is not None and self.deadline <= now

    def who_may_decide(self) -> str:
        if not self.approvers:
            return "admins"
        return " or ".join(f"approver:{g}" for g in self.approvers) + " (or admins)"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "step": self.step_key,
            "name": self.run_name,
            "principal": self.principal,
            "question": self.question,
            "context": self.context,
            "approvers": list(self.approvers),
            "on_timeout": self.on_timeout,
            "status": self.status,
            "created_at": iso(self.created_at),
            "deadline": iso(self.deadline),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "comment": self.comment,
        }


@dataclass(frozen=True)
class ApprovalDecision:
    """What `await ctx.approval(...)` returns. True in a boolean context when approved, so
    `if await ctx.approval(...):` reads as it should.

    `status` is "approved" or "rejected" (a human decided: `decided_by`, `comment`), or
    "timed_out" (nobody decided in time: `approved` is what on_timeout said, and
    `fallback` is what a fallback step returned)."""

    approved: bool
    status: str
    request_id: str
    decided_by: str | None = None
    comment: str | None = None
    decided_at: float | None = None
    fallback: Any = None

    @property
    def timed_out(self) -> bool:
        return self.status == TIMED_OUT

    def __bool__(self) -> bool:
        return self.approved


def may_decide(principal: Principal | None, approvers: Sequence[str]) -> bool:
    if principal is None or principal.disabled:
        return False
    return principal.has_role("admin") or any(
        principal.has_role(f"approver:{g}") for g in approvers
    )


def decided_outcome(request: ApprovalRequest) -> dict[str, Any]:
    """The checkpoint of the approval's wait once a human decided (JSON)."""
    return {
        "approval_id": request.id,
        "status": request.status,
        "approved": request.status == APPROVED,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at,
        "comment": request.comment,
    }


def refusal_text(request: ApprovalRequest) -> str:
    """Why a request that is no longer pending cannot be decided, naming its state."""
    at = f" at {iso(request.decided_at)}" if request.decided_at is not None else ""
    if request.status in (APPROVED, REJECTED):
        by = f" by {request.decided_by}" if request.decided_by else ""
        return f"approval {request.id} was already {request.status}{by}{at}; nothing changed"
    if request.status == TIMED_OUT:
        return (
            f"approval {request.id} timed out{at} (its deadline passed; on_timeout="
            f"{request.on_timeout} applied); it can no longer be decided"
        )
    return (
        f"approval {request.id} expired{at}: its run stopped waiting for it (cancelled); "
        "it can no longer be decided"
    )


MAX_COMMENT = 2000


def check_comment(comment: object) -> str | None:
    """A decision's comment: text (blank: none), at most MAX_COMMENT characters."""
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ConfigError(f"a comment must be text, got {comment!r}")
    if len(comment) > MAX_COMMENT:
        raise ConfigError(f"the comment is {len(comment)} characters; keep it under {MAX_COMMENT}")
    return comment.strip() or None


def not_an_approver(decider: str, principal: Principal | None, request: ApprovalRequest) -> str:
    """Why `decider` may not decide `request`, and what would fix it."""
    role = f"approver:{request.approvers[0]}" if request.approvers else "admin"
    if principal is None:
        why = (
            f"there is no principal named {decider!r} (the CLI decides as --as PRINCIPAL, "
            "else as ROTA_ACTOR or your OS user)"
        )
        fix = f"`rota principals add {decider} --kind user --role {role}`"
    elif principal.disabled:
        why = f"principal {decider!r} is disabled"
        fix = f"`rota principals enable {decider}`"
    else:
        why = f"principal {decider!r} is not an approver of it"
        fix = f"`rota principals grant {decider} --role {role}`"
    return (
        f"approval {request.id} may be decided by {request.who_may_decide()}; {why}. "
        f"Ask one of them, or have an admin run {fix}"
    )


def request_detail(request: ApprovalRequest) -> dict[str, Any]:
    """What the audit log keeps of a request when it is made or times out."""
    return {
        "question": request.question,
        "approvers": list(request.approvers),
        "deadline": iso(request.deadline),
        "on_timeout": request.on_timeout,
    }
