"""A checked routine as what the App runs: an Agent, the job function that runs it, its
triggers, its per-run and per-day budgets and its caps.

The job function runs the agent as the routine's principal (the owner of a personal routine,
the service account of a managed one): the worker's admission and the agent's permission
wrapper read that principal's scopes at every tool call, so the routine holds exactly what its
principal holds, and a revoke applies at the next call. The routine's `secrets:` are the only
secrets its tools may read (tool middleware), and its `approval:` rules gate its tools.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..agentloop.agent import Agent
from ..agents.tools import (
    CallNext,
    Tool,
    ToolDenied,
    ToolInvocation,
    ToolMiddleware,
    ToolSource,
)
from ..agents.types import ToolResult
from ..alerts import Alerts
from ..cost.budgets import Budget
from ..durations import seconds
from ..errors import AgentFailed
from ..shadow import is_shadow_task, run_shadow
from ..storage.audit import TOOL_STAGED, AuditEntry
from . import triggers as routine_triggers
from .caps import Caps
from .catalog import Catalog
from .loader import Routine
from .spec import ApiTrigger, ApprovalRule, Money, NotifySpec, RoutineSpec

if TYPE_CHECKING:
    from ..context import RunContext
    from ..scheduling.triggers import Trigger

INSTRUCTIONS = (
    "You are the rota routine {name!r}{description}. The user message is its prompt; do what "
    "it asks with the tools you are given, then give your final answer."
)


@dataclass(frozen=True)
class Built:
    """What registering a routine adds to the App."""

    agent: Agent
    fn: Callable[..., Awaitable[Any]]
    triggers: tuple[Trigger, ...]
    caps: Caps | None
    per_day: Budget | None
    fires_over_api: bool
    alerts: Alerts | None = None  # the job's alerts= (None: the app's)


def build(routine: Routine, catalog: Catalog, *, capped_name: str | None = None) -> Built:
    """The agent, job function, triggers, caps and daily budget of a checked routine."""
    spec = routine.spec
    agent = Agent(
        name=spec.name,
        model=spec.model,
        instructions=INSTRUCTIONS.format(
            name=spec.name, description=f" ({spec.description})" if spec.description else ""
        ),
        tools=_tools(spec, catalog),
        max_steps=spec.max_steps,
        output=_output_type(spec, catalog),
        success=_success(spec, catalog),
        budget=_budget(spec.budget.per_run if spec.budget else None),
        run_as=spec.principal,
        timeout=spec.timeout,
    )
    if isinstance(spec.output, dict):
        agent.output_schema = spec.output  # what the model is asked to answer in
    built = [routine_triggers.build(spec.name, t) for t in spec.triggers]
    return Built(
        agent=agent,
        fn=job_function(
            agent, routine.prompt, spec.secrets, staged=bool(spec.shadow and spec.shadow.staged)
        ),
        triggers=tuple(t for t in built if t is not None),
        caps=_caps(spec, capped_name or spec.name),
        per_day=_budget(spec.budget.per_day if spec.budget else None),
        fires_over_api=any(isinstance(t, ApiTrigger) for t in spec.triggers),
        alerts=_alerts(spec),
    )


def task_text(prompt: str, payload: Any) -> str:
    """What the agent is asked: the prompt, then the text a fire appended (`{"text": ...}`)
    or the input that started the run (an event's payload, an escalated item) as JSON."""
    if payload is None:
        return prompt
    if isinstance(payload, dict) and set(payload) == {"text"} and isinstance(payload["text"], str):
        return f"{prompt}\n\n{payload['text']}"
    return f"{prompt}\n\nInput:\n{json.dumps(payload, sort_keys=True, default=str)}"


def job_function(
    agent: Agent, prompt: str, secrets: list[str], *, staged: bool = False
) -> Callable[..., Awaitable[Any]]:
    """The function a run of the routine calls: the agent on the prompt (and the payload).
    A shadow task (the routine shadowing a Python job) runs in shadow mode (rota.shadow);
    a staged routine's tools with side effects are recorded, not executed."""
    only = only_secrets(agent.name, frozenset(secrets))

    async def run_routine(ctx: RunContext, payload: Any) -> Any:
        if is_shadow_task(payload):
            ask = task_text(prompt, payload["item"])
            return await run_shadow(ctx, agent, None, payload, ask=ask, middleware=[only])
        middleware = [staged_calls(ctx), only] if staged else [only]
        result = await agent.run(task_text(prompt, payload), ctx=ctx, tool_middleware=middleware)
        if not result.ok:
            raise AgentFailed(agent.name, result.reason, result.error)
        return result.output_json

    run_routine.__name__ = run_routine.__qualname__ = agent.name
    run_routine.__doc__ = f"Runs routine {agent.name!r}."
    run_routine.rota_agent = agent  # type: ignore[attr-defined]  # for replay
    run_routine.rota_deps = None  # type: ignore[attr-defined]
    return run_routine


class Staged(ToolDenied):
    """A call of a tool with side effects in a staged routine: recorded, not executed."""


def staged_calls(ctx: RunContext) -> ToolMiddleware:
    """Tool middleware of a staged routine (`shadow: {staged: true}`): a tool with side
    effects (any tool not marked read_only) is not called; the call is recorded in the
    audit log (`tool.staged`, with its arguments) and in the run's steps, and the model is
    told it was staged. Read-only tools run as usual."""

    async def middleware(inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        if inv.tool.read_only:
            return await call_next(inv)
        entry = AuditEntry(
            actor=inv.context.principal or "rota:anonymous",
            action=TOOL_STAGED,
            on_behalf_of=inv.context.principal,
            subject=inv.tool.name,
            run_id=ctx.run_id,
            detail={"agent": ctx.run.name, "call_id": inv.call.id, "arguments": inv.call.arguments},
        )
        runtime = ctx.runtime
        await runtime.db(runtime.write_audit, [entry])
        raise Staged(
            f"staged, not performed: this routine is staged, so {inv.tool.name!r} (a tool with "
            "side effects) was recorded instead of run; continue as if it had succeeded and "
            "give your final answer"
        )

    return middleware


def only_secrets(routine: str, allowed: frozenset[str]) -> ToolMiddleware:
    """Tool middleware: the tools of this routine may read only the secrets it names."""

    async def middleware(inv: ToolInvocation, call_next: CallNext, /) -> ToolResult:
        reader = inv.context.secrets
        if reader is None:
            return await call_next(inv)

        def secret(name: str) -> str:
            if name not in allowed:
                listed = ", ".join(sorted(allowed)) or "none"
                raise ToolDenied(
                    f"routine {routine!r} does not list secret {name!r} under secrets: "
                    f"(it lists: {listed})"
                )
            return reader(name)

        return await call_next(replace(inv, context=replace(inv.context, secrets=secret)))

    return middleware


def _tools(spec: RoutineSpec, catalog: Catalog) -> list[Tool | ToolSource]:
    rules: dict[str, list[ApprovalRule]] = {}
    for rule in spec.approval:
        for name in rule.tools:
            rules.setdefault(name, []).append(rule)
    chosen: list[Tool | ToolSource] = []
    for name in spec.tools:
        item = catalog.tools[name]
        if isinstance(item, Tool) and name in rules:
            item = gated(item, rules[name])
        chosen.append(item)
    return chosen


def gated(tool: Tool, rules: list[ApprovalRule]) -> Tool:
    """A copy of `tool` that needs approval when any of `rules` matches a call."""
    gate = copy.copy(tool)
    gate.requires_approval = lambda args: any(_matches(r, args) for r in rules)
    gate.approvers = tuple(dict.fromkeys(a for r in rules for a in r.approvers))
    gate.approval_timeout_s = min(seconds(r.timeout, what="approval timeout") for r in rules)
    return gate


def _matches(rule: ApprovalRule, args: dict[str, Any]) -> bool:
    if not rule.when:
        return True
    for field, bound in rule.when.items():
        value = args.get(field)
        if bound.gt is not None and isinstance(value, int | float) and value > bound.gt:
            return True
        if bound.in_ is not None and value in bound.in_:
            return True
    return False


def _output_type(spec: RoutineSpec, catalog: Catalog) -> Any:
    if isinstance(spec.output, dict):
        return dict[str, Any]
    if isinstance(spec.output, str):
        return catalog.outputs[spec.output]
    return None


def _success(spec: RoutineSpec, catalog: Catalog) -> Callable[[Any], Awaitable[bool]] | None:
    checks: list[Callable[[Any], Any]] = []
    for source in (spec.output, spec.success):
        if isinstance(source, dict):
            checks.append(_schema_check(source))
    if isinstance(spec.success, str):
        checks.append(catalog.checks[spec.success])
    if not checks:
        return None

    async def success(output: Any) -> bool:
        for check in checks:
            verdict = check(output)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is False:
                return False
        return True

    return success


def _schema_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    import jsonschema  # noqa: PLC0415  # heavy: jsonschema (referencing, attrs, rpds): only for routines with a schema

    validator = jsonschema.Draft202012Validator(schema)

    def meets(output: Any) -> bool:
        data = output.model_dump(mode="json") if hasattr(output, "model_dump") else output
        return validator.is_valid(data)

    return meets


def _alerts(spec: RoutineSpec) -> Alerts | None:
    """The routine's own alerts: its `notify`, and `caps.alert`; neither: the app's."""
    capped = spec.caps is not None and spec.caps.alert
    if spec.notify is None and not capped:
        return None
    notify = spec.notify or NotifySpec()
    silence_after = notify.silence if isinstance(notify.silence, str) else None
    return Alerts(
        sinks=tuple(notify.sinks),
        start=notify.start,
        success=notify.success,
        failure=notify.failure,
        budget=notify.budget,
        approval_after=notify.approval_after,
        silence=notify.silence is not False,
        silence_after=silence_after,
        capped=capped,
    )


def _budget(money: Money | None) -> Budget | None:
    if money is None or (money.usd is None and money.tokens is None):
        return None
    return Budget(usd=money.usd, tokens=money.tokens)


def _caps(spec: RoutineSpec, name: str) -> Caps | None:
    caps = spec.caps
    if caps is None and spec.cooldown is None and spec.stop_after is None:
        return None
    return Caps(
        name=name,
        principal=spec.principal,
        per_hour=caps.per_hour if caps else None,
        per_day=caps.per_day if caps else None,
        principal_per_hour=caps.principal_per_hour if caps else None,
        principal_per_day=caps.principal_per_day if caps else None,
        over=caps.over if caps else "drop",
        cooldown_s=seconds(spec.cooldown, what="cooldown") if spec.cooldown else None,
        stop_after=spec.stop_after.timestamp() if spec.stop_after else None,
    )
