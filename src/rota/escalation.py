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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import serialization
from .errors import ConfigError

if TYPE_CHECKING:
    from .app import App
    from .durable import RunContext
    from .jobs import JobDefinition

TRIGGER = "escalation"
SHADOW_TRIGGER = "shadow"


@dataclass(frozen=True)
class EscalationPolicy:
    """What a job definition says about escalating: to which agent, and how much to shadow."""

    agent: str
    shadow: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.shadow, bool) or not 0.0 <= self.shadow <= 1.0:
            raise ConfigError(f"shadow must be a fraction between 0 and 1, got {self.shadow!r}")


def escalate(
    ctx: RunContext, app: App, item: Any, *, reason: str, to: str | None = None
) -> dict[str, Any]:
    """Enqueue the agent run for `item`; returns what the job may return as its result."""
    definition = app.definition(ctx.run.name)
    target = to or (definition.escalation.agent if definition.escalation else None)
    if target is None:
        raise ConfigError(
            f"{ctx.run.name} has nowhere to escalate to: define it with "
            "@app.job(..., escalate_to=agent) or call ctx.escalate(item, reason=..., to='agent')"
        )
    agent = app.definition(target)
    if agent.kind != "agent":
        raise ConfigError(f"escalate_to must name an agent; {target!r} is a {agent.kind}")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError("ctx.escalate needs a reason: ctx.escalate(item, reason='...')")
    payload = {
        "item": item,
        "reason": reason,
        "escalated_from": {"run_id": ctx.run.id, "name": ctx.run.name},
    }
    run_id = _enqueue(ctx, app, agent, payload, TRIGGER, f"escalate#{ctx.next_escalation()}")
    return {"escalated_to": target, "run_id": run_id, "reason": reason}


def shadow(ctx: RunContext, app: App, item: Any, result: Any) -> str | None:
    """Send a sampled item the job handled to its agent in shadow mode; the run id, or None
    when the item is not in the sample."""
    definition = app.definition(ctx.run.name)
    policy = definition.escalation
    if policy is None or not sampled(ctx.run.id, policy.shadow):
        return None
    payload = {
        "item": item,
        "shadow_of": {"run_id": ctx.run.id, "name": ctx.run.name},
        "job_result": result,
    }
    return _enqueue(ctx, app, app.definition(policy.agent), payload, SHADOW_TRIGGER, "shadow")


def sampled(run_id: str, rate: float) -> bool:
    """Deterministic sampling by run id: a re-executed run decides the same way."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _enqueue(
    ctx: RunContext,
    app: App,
    agent: JobDefinition,
    payload: dict[str, Any],
    trigger: str,
    key: str,
) -> str:
    text = serialization.dumps(payload, what=f"the item escalated by {ctx.run.name!r}")
    run = agent.new_run(
        serialization.loads(text),
        now=app.clock.now(),
        trigger=trigger,
        idempotency_key=f"{ctx.run.id}:{key}",
        trigger_ref=ctx.run.id,
        parent_id=ctx.run.id,
    )
    [(run_id, _)] = app.store.enqueue([run])
    app._wake_local()
    return run_id
