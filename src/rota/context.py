"""The run context handed to jobs and workflows: the kernel's durable context
(rota.durable: steps, sleeps, waits for events) plus the features a run reaches through it,
human approval, escalation to an agent, secrets and agents run as steps of a workflow."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from . import escalation
from .agents.types import AgentResult
from .approvals.asking import Announce, Ask, parker
from .cost.budgets import SharedBudget
from .durable import DurableContext, Runtime
from .durations import Duration
from .errors import RotaError, StoreLost, StoreUnavailable
from .identity.secrets import Vault
from .jobs import Enqueue, Registry
from .model import Run, Step
from .storage.approval_records import ApprovalDecision


@dataclass(frozen=True)
class RunServices:
    """What a run's features need of the process that defines its jobs (the App composes
    it for its workers): the definitions (`registry`), a way to queue runs and wake the
    local workers (`enqueue`: escalations, shadow runs), the shared budgets declared with
    app.budget (the App's own list), and what announces approval requests (None: no
    approval webhook)."""

    registry: Registry
    enqueue: Enqueue
    shared_budgets: Sequence[SharedBudget] = ()
    announce: Announce | None = None


class _Agent(Protocol):
    """What `ctx.agent` runs (a rota.Agent)."""

    @property
    def name(self) -> str: ...

    async def run(
        self, task: Any, *, deps: Any, ctx: RunContext, step_prefix: str
    ) -> AgentResult: ...


class RunContext(DurableContext):
    """Passed as the first argument to every job and workflow function."""

    def __init__(
        self,
        run: Run,
        runtime: Runtime,
        checkpoints: dict[str, Step],
        services: RunServices | None = None,
    ) -> None:
        super().__init__(run, runtime, checkpoints)
        self.services = services

    def escalate(self, item: Any, *, reason: str, to: str | None = None) -> dict[str, Any]:
        """Hand `item` to the job's agent (`escalate_to=`, or `to`): enqueues an agent run
        linked to this one, once per escalation of this run, and returns what to return:
        `return ctx.escalate(event, reason="unknown event type")`. See rota.escalation."""
        services = self.services
        if services is None:
            raise RotaError("ctx.escalate needs a run executed by a worker")
        with _store_lost_on_blip():
            return escalation.escalate(
                services.registry,
                services.enqueue,
                self.run,
                item,
                reason=reason,
                to=to,
                clock=self.runtime.clock,
                number=self.next_escalation,
            )

    def next_escalation(self) -> int:
        """Numbers this run's escalations in order, so a re-execution repeats the same keys."""
        self._escalations: int = getattr(self, "_escalations", 0) + 1
        return self._escalations

    def secret(self, name: str) -> str:
        """Secret `name`, if this run's principal is granted it; audited, and redacted from
        everything rota stores or logs afterwards (a step returning it stores
        `[redacted:NAME]`)."""
        vault = Vault(self.runtime.store, audit_with=self.runtime.write_audit)
        with _store_lost_on_blip():
            return vault.get(name, self.principal, run_id=self.run_id)

    async def agent(self, agent: _Agent, task: Any = None, *, deps: Any = None) -> AgentResult:
        """Run `agent` as part of this workflow. Its model and tool calls are steps of this
        run (`agent:NAME/model#1`, `agent:NAME/tool:lookup`, ...), so a resumed workflow
        replays them instead of calling again. Returns the AgentResult whatever its reason;
        `result.output_or_raise()` turns a failure into AgentFailed."""
        prefix = self._next_key(f"agent:{agent.name}")
        return await agent.run(task, deps=deps, ctx=self, step_prefix=f"{prefix}/")

    async def approval(
        self,
        question: str,
        *,
        approvers: str | Sequence[str] | None = None,
        timeout: Duration | None = None,
        on_timeout: str | Callable[..., Any] = "reject",
        context: Mapping[str, Any] | None = None,
        name: str = "approval",
    ) -> ApprovalDecision:
        """Ask a human: the run parks until a principal with the role `approver:<group>`
        (of one of `approvers`) or `admin` approves or rejects (`rota approvals ...`, the
        HTTP API), or `timeout` passes; then `on_timeout` applies: "reject", "approve",
        "fail" or a fallback function run as a step. Returns an ApprovalDecision (truthy
        when approved). `context` (JSON) is shown to the approver. See docs/approvals.md."""
        ask = Ask.make(question, approvers, timeout, on_timeout, context)
        pending = self.begin_wait(name)
        outcome = pending.outcome
        if outcome is None:
            now = self.runtime.clock.now()
            request = ask.request(self.run, pending.key, now)
            announce = None if self.services is None else self.services.announce
            # The run's start precedes its request in the log.
            await self.db(self.runtime.write_audit, [])
            outcome = await self.park(
                pending,
                "approval",
                now=now,
                deadline=request.deadline,
                detail=ask.wait_detail(request),
                park=parker(self.runtime, request, announce),
            )
        return await ask.decision(self, pending.key, outcome)


@contextmanager
def _store_lost_on_blip() -> Iterator[None]:
    """For the context's own synchronous store calls: see DurableContext.db."""
    try:
        yield
    except StoreUnavailable as exc:
        raise StoreLost(exc) from exc
