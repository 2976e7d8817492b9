"""The audit records of a run's life that the worker and the app write."""

from __future__ import annotations

from ..model import Run
from ..storage.audit import RUN_REFUSED, RUN_STARTED, AuditEntry
from .principals import Principal

ANONYMOUS = "rota:anonymous"  # the actor of a run that names no principal


def run_started(run: Run, principal: Principal | None) -> AuditEntry:
    return AuditEntry(
        actor=run.principal or ANONYMOUS,
        action=RUN_STARTED,
        actor_kind="machine",  # a run acts for its principal; a human asking is run.requested
        subject=run.name,
        run_id=run.id,
        detail={
            "kind": run.kind,
            "trigger": run.trigger,
            "trigger_ref": run.trigger_ref,
            "attempt": run.attempt,
            "principal_kind": principal.kind if principal else None,
        },
        at=run.started_at,
    )


def run_refused(run: Run, reason: str) -> AuditEntry:
    return AuditEntry(
        actor=run.principal or ANONYMOUS,
        action=RUN_REFUSED,
        subject=run.name,
        run_id=run.id,
        detail={"trigger": run.trigger, "trigger_ref": run.trigger_ref, "reason": reason},
    )
