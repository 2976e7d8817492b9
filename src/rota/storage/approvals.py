"""Approval requests, mixed into SqlStore: a durable wait of kind "approval" plus its request.

A request is stored with its wait in one transaction (`request_approval`), with its audit
record and, when a webhook is configured, the run that notifies people of it: a request is
never without its wait, and never unannounced.

Deciding (`decide_approval`) happens in one transaction under the run's row lock, the lock
every change to the request and its wait takes (a decision, the deadline sweep, a cancel).
So of two approvers deciding at once, the second sees the first's decision and is refused:
nothing is decided twice. A refusal (not an approver, already decided, past its deadline) is
audited and changes nothing else. Timeouts and expiries arrive through `_wait_closed`, the
hook WaitQueries calls inside the transaction that closes the wait.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import serialization
from ..clock import iso
from ..errors import ApprovalNotFound, ApprovalRefused
from ..model import NewRun, NewWait
from .approval_records import (
    APPROVED,
    EXPIRED,
    PENDING,
    REJECTED,
    TIMED_OUT,
    ApprovalRequest,
    check_comment,
    decided_outcome,
    may_decide,
    not_an_approver,
    refusal_text,
    request_detail,
)
from .audit import (
    APPROVAL_GRANTED,
    APPROVAL_REFUSED,
    APPROVAL_REJECTED,
    APPROVAL_TIMED_OUT,
    AuditEntry,
)
from .dialects import Connection, Row
from .principals import Principal, PrincipalQueries
from .runs import RunInserts
from .waits import OPEN, Parking, WaitQueries

TIMEOUT_ACTOR = "rota:worker"  # the deadline sweep that times requests out runs in workers


class ApprovalQueries(RunInserts, WaitQueries, PrincipalQueries):
    # -- requesting -----------------------------------------------------------------------

    def request_approval(
        self,
        wait: NewWait,
        now: float,
        *,
        request: ApprovalRequest,
        audit: Sequence[AuditEntry] = (),
        notify: Sequence[NewRun] = (),
    ) -> Parking:
        """Park the run on `wait` and store `request` (with its audit records and the
        runs that announce it), all or nothing. Fenced by the run's lease like `park`."""
        with self.tx() as conn:
            parking = self._park(conn, wait, now)
            if parking.state != "parked":
                return parking
            # A run retried after a cancel asks afresh; the old request stays as history.
            conn.execute(
                """UPDATE rota_approvals SET status = :expired, decided_at = :now
                WHERE run_id = :run_id AND step_key = :step_key AND status = :pending""",
                {
                    "run_id": wait.run_id,
                    "step_key": wait.step_key,
                    "expired": EXPIRED,
                    "pending": PENDING,
                    "now": now,
                },
            )
            conn.execute(
                """INSERT INTO rota_approvals (id, run_id, step_key, run_name, principal,
                    question, context, approvers, on_timeout, status, created_at, deadline)
                VALUES (:id, :run_id, :step_key, :run_name, :principal, :question, :context,
                    :approvers, :on_timeout, :status, :created_at, :deadline)""",
                _row_params(request),
            )
            if audit:
                self.append_audit(conn, audit)
            if notify:
                self._insert_runs(conn, notify)
                self.dialect.notify(conn)
        return parking

    # -- reading --------------------------------------------------------------------------

    def approval(self, approval_id: str) -> ApprovalRequest:
        rows = self.conn().execute(
            "SELECT * FROM rota_approvals WHERE id = :id", {"id": approval_id}
        )
        if not rows:
            raise ApprovalNotFound(approval_id)
        return _request(rows[0])

    def approval_for_step(self, run_id: str, step_key: str) -> ApprovalRequest | None:
        """The latest request a step of a run made (a retried run may have made several)."""
        rows = self.conn().execute(
            """SELECT * FROM rota_approvals WHERE run_id = :run_id AND step_key = :step_key
            ORDER BY created_at DESC, id DESC LIMIT 1""",
            {"run_id": run_id, "step_key": step_key},
        )
        return _request(rows[0]) if rows else None

    def approvals(
        self, *, statuses: Sequence[str] = (PENDING,), limit: int = 100
    ) -> list[ApprovalRequest]:
        """Requests in these states (none given: all), newest first."""
        d = self.dialect
        where, params = "", {"limit": limit}
        if statuses:
            where = f"WHERE {d.any_of('status', 'statuses')}"
            params["statuses"] = d.list_param(list(statuses))
        rows = self.conn().execute(
            f"""SELECT * FROM rota_approvals {where}
            ORDER BY created_at DESC, id DESC LIMIT :limit""",
            params,
        )
        return [_request(r) for r in rows]

    def approvals_changed(self, since: float, limit: int) -> list[ApprovalRequest]:
        rows = self.conn().execute(
            """SELECT * FROM rota_approvals WHERE created_at >= :since OR decided_at >= :since
            ORDER BY created_at, id LIMIT :limit""",
            {"since": since, "limit": limit},
        )
        return [_request(r) for r in rows]

    # -- deciding -------------------------------------------------------------------------

    def decide_approval(
        self,
        approval_id: str,
        decider: str,
        approve: bool,
        comment: str | None,
        now: float,
        *,
        via: str,
        note: dict[str, Any] | None = None,
    ) -> ApprovalRequest:
        """Approve or reject a pending request as principal `decider` (read as stored now):
        records the decision, audits it, checkpoints the wait and queues the run, in one
        transaction. Raises ApprovalNotFound, or ApprovalRefused (audited) when the decider
        is not an approver of the request or the request is no longer pending."""
        decided = self._decide(
            approval_id, decider, approve, check_comment(comment), now, via, note
        )
        if isinstance(decided, ApprovalRefused):
            raise decided  # raised here, not in _decide, so its traceback holds no connection
        return decided

    def _decide(
        self,
        approval_id: str,
        decider: str,
        approve: bool,
        comment: str | None,
        now: float,
        via: str,
        note: dict[str, Any] | None,
    ) -> ApprovalRequest | ApprovalRefused:
        with self.tx() as conn:
            request = self._locked_request(conn, approval_id)
            principal = self.principal(decider)
            refused = self._refusal(conn, request, decider, principal, now)
            detail = {"via": via, "question": request.question, **(note or {})}
            if refused is not None:
                entry = _entry(decider, principal, APPROVAL_REFUSED, request, detail)
                more = {"reason": str(refused), "attempted": _verb(approve)}
                self.append_audit(conn, [_with(entry, **more)])
                return refused
            assert principal is not None  # may_decide() said so
            decided = self._record(conn, request, principal, approve, comment, now)
            action = APPROVAL_GRANTED if approve else APPROVAL_REJECTED
            entry = _entry(decider, principal, action, request, detail)
            self.append_audit(conn, [_with(entry, comment=comment)])
            outcome = decided_outcome(decided)
            self._resolve(conn, [_wait_key(request)], "resolved", lambda _: outcome, now)
            return decided

    def _locked_request(self, conn: Connection, approval_id: str) -> ApprovalRequest:
        """The request, read again after locking its run's row: every writer of a request
        holds that lock, so what is read here stays true until the transaction ends."""
        rows = conn.execute("SELECT run_id FROM rota_approvals WHERE id = :id", {"id": approval_id})
        if not rows:
            raise ApprovalNotFound(approval_id)
        conn.execute(
            f"SELECT id FROM rota_runs WHERE id = :id {self.dialect.row_lock}",
            {"id": rows[0]["run_id"]},
        )
        rows = conn.execute(
            f"SELECT * FROM rota_approvals WHERE id = :id {self.dialect.row_lock}",
            {"id": approval_id},
        )
        return _request(rows[0])

    def _refusal(
        self,
        conn: Connection,
        request: ApprovalRequest,
        decider: str,
        principal: Principal | None,
        now: float,
    ) -> ApprovalRefused | None:
        if not may_decide(principal, request.approvers):
            return ApprovalRefused(
                request.id, "forbidden", not_an_approver(decider, principal, request)
            )
        if request.status != PENDING:
            return ApprovalRefused(request.id, request.status, refusal_text(request))
        if request.expired_by(now):
            return ApprovalRefused(
                request.id,
                "expired",
                f"approval {request.id} expired at {iso(request.deadline)}: its deadline "
                f"passed, so it times out (on_timeout={request.on_timeout}) instead of being "
                "decided",
            )
        if not self._wait_open(conn, request):  # its run stopped waiting: a missed expiry
            self._set_status(conn, request, EXPIRED, now)
            return ApprovalRefused(request.id, EXPIRED, refusal_text(_expired(request, now)))
        return None

    def _wait_open(self, conn: Connection, request: ApprovalRequest) -> bool:
        rows = conn.execute(
            """SELECT 1 FROM rota_waits WHERE run_id = :run_id AND step_key = :step_key
            AND status = :open""",
            {**_wait_key(request), "open": OPEN},
        )
        return bool(rows)

    def _record(
        self,
        conn: Connection,
        request: ApprovalRequest,
        principal: Principal,
        approve: bool,
        comment: str | None,
        now: float,
    ) -> ApprovalRequest:
        status = APPROVED if approve else REJECTED
        conn.execute(
            """UPDATE rota_approvals SET status = :status, decided_by = :by,
                decided_at = :now, comment = :comment
            WHERE id = :id AND status = :pending""",
            {
                "status": status,
                "by": principal.name,
                "now": now,
                "comment": comment,
                "id": request.id,
                "pending": PENDING,
            },
        )
        return _decided(request, status, principal.name, now, comment)

    def _set_status(
        self, conn: Connection, request: ApprovalRequest, status: str, now: float
    ) -> None:
        conn.execute(
            """UPDATE rota_approvals SET status = :status, decided_at = :now
            WHERE id = :id AND status = :pending""",
            {"status": status, "now": now, "id": request.id, "pending": PENDING},
        )

    # -- timeouts and expiries (WaitQueries' hook) ----------------------------------------

    def _wait_closed(self, conn: Connection, wait: Row, status: str, now: float) -> None:
        if wait["kind"] != "approval" or status == "resolved":  # decisions record themselves
            return
        new = TIMED_OUT if status == "timed_out" else EXPIRED
        rows = conn.execute(
            """UPDATE rota_approvals SET status = :new, decided_at = :now
            WHERE run_id = :run_id AND step_key = :step_key AND status = :pending
            RETURNING *""",
            {
                "new": new,
                "now": now,
                "run_id": wait["run_id"],
                "step_key": wait["step_key"],
                "pending": PENDING,
            },
        )
        if rows and new == TIMED_OUT:
            request = _request(rows[0])
            entry = AuditEntry(
                TIMEOUT_ACTOR,
                APPROVAL_TIMED_OUT,
                "machine",
                subject=request.id,
                run_id=request.run_id,
                detail=request_detail(request),
            )
            self.append_audit(conn, [entry])


def _request(row: Row) -> ApprovalRequest:
    return ApprovalRequest(
        id=row["id"],
        run_id=row["run_id"],
        step_key=row["step_key"],
        run_name=row["run_name"],
        principal=row["principal"],
        question=row["question"],
        context=serialization.loads(row["context"]),
        approvers=tuple(json.loads(row["approvers"])),
        on_timeout=row["on_timeout"],
        status=row["status"],
        created_at=float(row["created_at"]),
        deadline=None if row["deadline"] is None else float(row["deadline"]),
        decided_by=row["decided_by"],
        decided_at=None if row["decided_at"] is None else float(row["decided_at"]),
        comment=row["comment"],
    )


def _row_params(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "run_id": request.run_id,
        "step_key": request.step_key,
        "run_name": request.run_name,
        "principal": request.principal,
        "question": request.question,
        "context": serialization.dumps(request.context, what="the approval's context"),
        "approvers": json.dumps(list(request.approvers)),
        "on_timeout": request.on_timeout,
        "status": request.status,
        "created_at": request.created_at,
        "deadline": request.deadline,
    }


def _wait_key(request: ApprovalRequest) -> dict[str, str]:
    return {"run_id": request.run_id, "step_key": request.step_key}


def _decided(
    request: ApprovalRequest, status: str, by: str, now: float, comment: str | None
) -> ApprovalRequest:
    return replace(request, status=status, decided_by=by, decided_at=now, comment=comment)


def _expired(request: ApprovalRequest, now: float) -> ApprovalRequest:
    return replace(request, status=EXPIRED, decided_at=now)


def _entry(
    decider: str,
    principal: Principal | None,
    action: str,
    request: ApprovalRequest,
    detail: dict[str, Any],
) -> AuditEntry:
    return AuditEntry(
        decider,
        action,
        principal.actor_kind if principal is not None else "human",
        subject=request.id,
        run_id=request.run_id,
        detail={**detail, "approvers": list(request.approvers)},
    )


def _with(entry: AuditEntry, **more: Any) -> AuditEntry:
    return replace(entry, detail={**(entry.detail or {}), **more})


def _verb(approve: bool) -> str:
    return "approve" if approve else "reject"
