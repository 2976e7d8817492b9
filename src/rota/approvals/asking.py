"""`ctx.approval(...)`: how a run asks for a decision and what it gets back.

The request is a durable wait of kind "approval": the run parks (WAITING, no worker slot)
with the request stored beside its wait, and resumes when a human decides or the deadline
passes. The wait's checkpoint holds the outcome, so a resumed run, and every re-execution
after it, gets the same ApprovalDecision without asking again.

On timeout, `on_timeout` decides what the workflow sees: "reject" (approved=False, the
default), "approve" (approved=True), "fail" (ApprovalTimedOut fails the run), or a function,
run once as a durable step (`<key>/fallback`) with the request as JSON; its result is the
decision's `fallback` (approved=False).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .. import serialization
from ..clock import iso
from ..durations import Duration, optional_seconds
from ..errors import ApprovalTimedOut, ConfigError
from ..identity.principals import approver_groups
from ..ids import new_id
from ..model import NewRun, Run
from ..redaction import redactor
from ..storage.approval_records import (
    FALLBACK,
    ON_TIMEOUT,
    PENDING,
    TIMED_OUT,
    ApprovalDecision,
    ApprovalRequest,
    request_detail,
)
from ..storage.audit import APPROVAL_REQUESTED, AuditEntry
from ..storage.base import ApprovalStore

if TYPE_CHECKING:
    from ..durable import DurableContext, Runtime

OnTimeout = str | Callable[..., Any]
Announce = Callable[[ApprovalRequest], NewRun]
"""The run that announces a new approval request (rota.approvals.notify)."""
_MAX_QUESTION = 2000


class Asker(Protocol):
    """What asks a human and waits for the decision: a run's context (`ctx.approval`)."""

    async def approval(
        self,
        question: str,
        *,
        approvers: str | Sequence[str] | None = None,
        timeout: Duration | None = None,
        on_timeout: OnTimeout = "reject",
        context: Mapping[str, Any] | None = None,
        name: str = "approval",
    ) -> ApprovalDecision: ...


@dataclass(frozen=True)
class Ask:
    """A validated `ctx.approval(...)` call."""

    question: str
    approvers: tuple[str, ...]
    timeout_s: float | None
    on_timeout: OnTimeout
    context: Any

    @classmethod
    def make(
        cls,
        question: str,
        approvers: str | Sequence[str] | None,
        timeout: Duration | None,
        on_timeout: OnTimeout,
        context: Mapping[str, Any] | None,
    ) -> Ask:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(
                "ctx.approval needs a question for the approver, e.g. "
                "ctx.approval('Refund $500 to acme?', approvers='finance', timeout='4h')"
            )
        if len(question) > _MAX_QUESTION:
            raise ConfigError(
                f"the approval question is {len(question)} characters; keep it under "
                f"{_MAX_QUESTION} and put details in context={{...}}"
            )
        timeout_s = optional_seconds(timeout, what="ctx.approval timeout")
        if timeout_s is not None and timeout_s <= 0:
            raise ConfigError(
                "ctx.approval timeout must be more than 0 (a person needs time to answer); "
                "pass timeout=None to wait until someone decides"
            )
        if not callable(on_timeout) and on_timeout not in ON_TIMEOUT:
            raise ConfigError(
                f"on_timeout={on_timeout!r} is not one of 'reject', 'approve', 'fail' or a "
                "fallback function (run as a step when nobody decides in time)"
            )
        if context is not None and not isinstance(context, Mapping):
            raise ConfigError(f"context must be a dict of JSON values, got {context!r}")
        stored = serialization.roundtrip(dict(context or {}), what="the approval's context")
        groups = approver_groups(approvers, what="ctx.approval")
        # Stored as plain text (and sent to chat): without any secret value read so far.
        return cls(redactor.redact(question.strip()), groups, timeout_s, on_timeout, stored)

    @property
    def on_timeout_label(self) -> str:
        return FALLBACK if callable(self.on_timeout) else str(self.on_timeout)

    def request(self, run: Run, key: str, now: float) -> ApprovalRequest:
        return ApprovalRequest(
            id=new_id(),
            run_id=run.id,
            step_key=key,
            run_name=run.name,
            principal=run.principal,
            question=self.question,
            context=self.context,
            approvers=self.approvers,
            on_timeout=self.on_timeout_label,
            status=PENDING,
            created_at=now,
            deadline=None if self.timeout_s is None else now + self.timeout_s,
        )

    def wait_detail(self, request: ApprovalRequest) -> dict[str, Any]:
        """What `rota runs show` tells about the wait."""
        return {
            "approval_id": request.id,
            "question": request.question,
            "approvers": list(request.approvers),
            "on_timeout": request.on_timeout,
        }

    async def decision(self, ctx: DurableContext, key: str, outcome: Any) -> ApprovalDecision:
        """The checkpointed outcome as the workflow sees it, applying on_timeout."""
        if not outcome.get("timed_out"):
            return ApprovalDecision(
                approved=bool(outcome.get("approved")),
                status=str(outcome.get("status")),
                request_id=str(outcome.get("approval_id")),
                decided_by=outcome.get("decided_by"),
                comment=outcome.get("comment"),
                decided_at=outcome.get("decided_at"),
            )
        request = await _request_of(ctx, key)
        timed_out = ApprovalDecision(approved=False, status=TIMED_OUT, request_id=request.id)
        if self.on_timeout == "approve":
            return ApprovalDecision(approved=True, status=TIMED_OUT, request_id=request.id)
        if self.on_timeout == "fail":
            raise ApprovalTimedOut(
                f"nobody decided approval {request.id} ({request.question!r}) by its deadline "
                f"{iso(request.deadline)}, and on_timeout='fail'"
            )
        if callable(self.on_timeout):
            result = await ctx.step(f"{key}/fallback", self.on_timeout, request.to_json())
            return ApprovalDecision(
                approved=False, status=TIMED_OUT, request_id=request.id, fallback=result
            )
        return timed_out


def parker(
    runtime: Runtime, request: ApprovalRequest, announce: Announce | None
) -> Callable[..., Any]:
    """What parks the run: the store's request_approval, with the request, its audit
    record and (`announce`: when the app has an approval webhook) the run that announces
    it."""
    store: ApprovalStore = runtime.store
    requested = AuditEntry(
        request.principal or "rota:anonymous",
        APPROVAL_REQUESTED,
        "machine",
        subject=request.id,
        run_id=request.run_id,
        detail=request_detail(request),
    )
    return partial(
        store.request_approval,
        request=request,
        audit=[requested],
        notify=[] if announce is None else [announce(request)],
    )


async def _request_of(ctx: DurableContext, key: str) -> ApprovalRequest:
    runtime = ctx.runtime
    store: ApprovalStore = runtime.store
    request = await runtime.db(store.approval_for_step, ctx.run_id, key)
    if request is None:  # cannot happen: the request is stored with its wait
        raise ConfigError(f"run {ctx.run_id} has no approval request for step {key!r}")
    return request
