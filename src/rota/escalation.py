"""Escalation: a job hands the items it does not understand to an agent, one line each.

    @app.job(trigger=on_event("billing.event"), escalate_to=reviewer, shadow=0.05)
    def bill(ctx, event):
        if event["type"] not in KNOWN:
            return ctx.escalate(event, reason="unknown event type")
        ...

`ctx.escalate(item, reason=...)` enqueues a run of the agent (kind "agent", trigger
"escalation") whose task is the item, the reason and where it came from; it is linked to
the job's run (`parent_id`), so `rota runs show` tells the chain job -> agent -> human. The
agent run has its own budget, retries and concurrency limit (`app.agent(reviewer,
concurrency=4)`, or `escalate_to=` registers it with defaults). The enqueue is idempotent per
(run, escalation number): a job re-executed after a crash escalates the same item once.

`shadow=0.05` also sends a deterministic 5% sample of the items the job handled itself to the
agent, in shadow mode (see rota.shadow): the agent's decision is recorded and compared with
the job's, field by field, and never acted upon.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import serialization
from .clock import Clock
from .errors import ConfigError
from .jobs import ESCALATION_TRIGGER, SHADOW_TRIGGER, Enqueue, JobDefinition, Registry
from .model import Run
from .observability import current_traceparent


def escalate(
    registry: Registry,
    enqueue: Enqueue,
    run: Run,
    item: Any,
    *,
    reason: str,
    to: str | None = None,
    clock: Clock,
    number: Callable[[], int],
) -> dict[str, Any]:
    """Enqueue the agent run for `item`, escalated by `run`; returns what the job may return
    as its result. `number` numbers the run's escalations (the idempotency key's suffix)."""
    definition = registry.definition(run.name)
    target = to or (definition.escalation.agent if definition.escalation else None)
    if target is None:
        raise ConfigError(
            f"{run.name} has nowhere to escalate to: define it with "
            "@app.job(..., escalate_to=agent) or call ctx.escalate(item, reason=..., to='agent')"
        )
    agent = registry.definition(target)
    if agent.kind != "agent":
        raise ConfigError(f"escalate_to must name an agent; {target!r} is a {agent.kind}")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError("ctx.escalate needs a reason: ctx.escalate(item, reason='...')")
    payload = {
        "item": item,
        "reason": reason,
        "escalated_from": {"run_id": run.id, "name": run.name},
    }
    run_id = _enqueue(
        enqueue, clock, run, agent, payload, ESCALATION_TRIGGER, f"escalate#{number()}"
    )
    return {"escalated_to": target, "run_id": run_id, "reason": reason}


def shadow(
    registry: Registry, enqueue: Enqueue, run: Run, item: Any, result: Any, *, clock: Clock
) -> str | None:
    """Send a sampled item `run` handled to its agent in shadow mode; the run id, or None
    when the item is not in the sample."""
    definition = registry.definition(run.name)
    policy = definition.escalation
    if policy is None or not sampled(run.id, policy.shadow):
        return None
    payload = {
        "item": item,
        "shadow_of": {"run_id": run.id, "name": run.name},
        "job_result": result,
    }
    agent = registry.definition(policy.agent)
    return _enqueue(enqueue, clock, run, agent, payload, SHADOW_TRIGGER, "shadow")


def sampled(run_id: str, rate: float) -> bool:
    """Deterministic sampling by run id: a re-executed run decides the same way."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _enqueue(
    enqueue: Enqueue,
    clock: Clock,
    origin: Run,
    agent: JobDefinition,
    payload: dict[str, Any],
    trigger: str,
    key: str,
) -> str:
    text = serialization.dumps(payload, what=f"the item escalated by {origin.name!r}")
    run = agent.new_run(
        serialization.loads(text),
        now=clock.now(),
        trigger=trigger,
        idempotency_key=f"{origin.id}:{key}",
        trigger_ref=origin.id,
        parent_id=origin.id,
    )
    # In the trace of the run that made it: under the current span (its step), else under
    # whatever that run continued.
    run = replace(run, trace_context=current_traceparent() or origin.trace_context)
    [(run_id, _)] = enqueue([run])
    return run_id
