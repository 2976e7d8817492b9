"""What the Run page shows, read from the store: the run's header figures, its step waterfall,
its agent trace with token and cost totals per subtree, the escalation chain and who acted.

Everything here is plain data for `templates/run.html`; the reading is done in one call per
page or fragment (`run_summary`, `waterfall_page`, `trace_page`), on the API's database
thread. Values a run stored (payload, result, errors, tool arguments and results) pass the
process's redactor once more, so a secret this process knows shows as `[redacted:NAME]`
even in a record written before it was registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...agentloop.trace import PUSD_PER_USD, agent_trace
from ...model import ModelCall, Run, RunState, Step, Wait
from ...redaction import redactor
from ...storage import run_views
from ...storage.base import Store
from ..context import ApiContext

STEP_PAGE = 100  # steps rendered with the page; the rest come in pages as they scroll in
MORE_STEPS = 200
CALL_PAGE = 20  # model calls of an agent rendered with the page
MORE_CALLS = 50
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class Bar:
    """One row of the waterfall: a step or a wait, placed on the run's time span
    (`start` and `width` are fractions of it)."""

    label: str
    kind: str  # step | model | tool | approval | wait
    state: str
    start: float
    width: float
    seconds: float
    offset: float
    attempts: int = 1
    detail: str = ""


@dataclass(frozen=True)
class Span:
    """The time the waterfall covers: from the run's start (or creation) to its end (or
    now, while it runs)."""

    begin: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.begin, 1e-6)

    def place(self, start: float, finish: float) -> tuple[float, float]:
        left = min(max((start - self.begin) / self.seconds, 0.0), 1.0)
        width = min(max((finish - start) / self.seconds, 0.0), 1.0 - left)
        return left, width


@dataclass(frozen=True)
class Totals:
    """Tokens and cost summed over a subtree of the trace."""

    calls: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TOKENS, 0))
    cost_usd: float = 0.0

    def plus(self, usage: dict[str, int], cost: float | None) -> Totals:
        summed = {k: self.tokens[k] + int(usage.get(k, 0)) for k in _TOKENS}
        return Totals(self.calls + 1, summed, self.cost_usd + (cost or 0.0))


@dataclass(frozen=True)
class ChainLink:
    """A run of the escalation chain, or the human who decided one of its approvals."""

    depth: int
    kind: str  # job | workflow | agent | human
    label: str
    state: str
    run_id: str | None
    current: bool = False


@dataclass(frozen=True)
class RunSummary:
    run: Run
    duration_s: float | None
    cost_usd: float
    tokens: Totals
    acted: list[str]
    failed_step: Step | None
    error: Any
    payload: Any
    result: Any
    chain: list[ChainLink]
    waiting_for: str | None
    step_count: int | None  # None: more than the first page (not counted)
    # The trace, one node per agent: prefix, totals and the first page of its calls; None
    # when the run is too long to read whole for the page (the page fetches it after).
    agents: list[dict[str, Any]] | None
    has_trace: bool
    bars: list[Bar]
    more_steps_after: int | None  # the seq to fetch more steps after, when there are more


def run_summary(ctx: ApiContext, run_id: str) -> RunSummary:
    """What the page shows first: the header, the first page of steps and, for a run short
    enough to read whole, its trace. Only that first page of steps is read for a long run,
    so the page's first content does not wait on thousands of steps."""
    store = ctx.app.store
    run = store.get_run(run_id)
    head = store.steps_page(run_id, -1, STEP_PAGE + 1)
    whole = len(head) <= STEP_PAGE
    waits = store.waits([run_id])
    calls = store.model_calls(run_id)
    span = _span(run, ctx.app.clock.now())
    bars = _bars(span, head[:STEP_PAGE], waits)
    total = Totals()
    for call in calls:
        total = total.plus(_usage_of(call), call.cost_pusd / PUSD_PER_USD)
    failed = None
    if run.state == RunState.FAILED:  # the step that failed, however deep in a long run
        failed = next(
            (s for s in reversed(head if whole else store.steps(run_id)) if s.state == "FAILED"),
            None,
        )
    open_wait = run_views.open_waits(waits).get(run_id)
    return RunSummary(
        run=run,
        duration_s=run_views.duration(run),
        cost_usd=total.cost_usd,
        tokens=total,
        acted=_who_acted(store, run, waits),
        failed_step=failed,
        error=redactor.redact_json(run.error),
        payload=redactor.redact_json(run.payload),
        result=redactor.redact_json(run.result),
        chain=_chain(store, run),
        waiting_for=_describe(open_wait) if open_wait and run.state == RunState.WAITING else None,
        step_count=len(head) if whole else None,
        agents=_agents(head, calls, 0, CALL_PAGE) if whole else None,
        has_trace=bool(calls) or run.kind == "agent",
        bars=bars,
        more_steps_after=None if whole else head[STEP_PAGE - 1].seq,
    )


def waterfall_page(ctx: ApiContext, run_id: str, after: int) -> tuple[list[Bar], int | None]:
    """The waterfall rows of the steps after seq `after`, and where the next page starts."""
    store = ctx.app.store
    run = store.get_run(run_id)
    rows = store.steps_page(run_id, after, MORE_STEPS + 1)
    page = rows[:MORE_STEPS]
    span = _span(run, ctx.app.clock.now())
    bars = _bars(span, page, [])  # waits were placed with the first page
    return bars, page[-1].seq if len(rows) > MORE_STEPS else None


def trace_page(ctx: ApiContext, run_id: str, start: int) -> list[dict[str, Any]]:
    """The trace with model calls `start`.. of each agent (a long run's trace is read on
    its own, after the page)."""
    store = ctx.app.store
    store.get_run(run_id)  # RunNotFound for an unknown run
    count = CALL_PAGE if start == 0 else MORE_CALLS
    return _agents(store.steps(run_id), store.model_calls(run_id), start, count)


# -- pieces ----------------------------------------------------------------------------------


def _span(run: Run, now: float) -> Span:
    begin = run.started_at if run.started_at is not None else run.created_at
    end = run.finished_at if run.finished_at is not None else max(now, begin)
    return Span(begin, end)


def _bars(span: Span, steps: Sequence[Step], waits: Sequence[Wait]) -> list[Bar]:
    rows = [_step_bar(span, s) for s in steps]
    for wait in waits:
        start = wait.created_at
        finish = wait.resolved_at if wait.resolved_at is not None else span.end
        left, width = span.place(start, finish)
        rows.append(
            Bar(
                label=f"parked: {wait.kind}",
                kind="wait",
                state=wait.status,
                start=left,
                width=width,
                seconds=max(finish - start, 0.0),
                offset=start - span.begin,
                detail=_describe(wait),
            )
        )
    return sorted(rows, key=lambda b: b.offset)


def _step_bar(span: Span, step: Step) -> Bar:
    left, width = span.place(step.started_at, step.finished_at)
    kind = "step"
    if "model#" in step.key:
        kind = "model"
    elif step.key.endswith("/approval"):
        kind = "approval"
    elif "tool:" in step.key:
        kind = "tool"
    detail = ""
    if step.error:
        detail = str(redactor.redact_json(step.error).get("message", ""))
    return Bar(
        label=step.key,
        kind=kind,
        state=step.state.lower(),
        start=left,
        width=width,
        seconds=step.finished_at - step.started_at,
        offset=step.started_at - span.begin,
        attempts=step.attempts,
        detail=detail,
    )


def _agents(
    steps: Sequence[Step], calls: Sequence[ModelCall], start: int, count: int
) -> list[dict[str, Any]]:
    """The trace, one node per agent, each with its totals (over all its calls) and the
    model calls `start`..`start + count` (each with its own totals), redacted."""
    nodes = []
    for index, node in enumerate(agent_trace(steps, calls)):
        totals = Totals()
        for call in node["model_calls"]:
            totals = totals.plus(call["usage"], call["cost_usd"])
        shown = node["model_calls"][start : start + count]
        following = start + count if len(node["model_calls"]) > start + count else None
        nodes.append(
            {
                "index": index,
                "prefix": node["prefix"] or "(top level)",
                "totals": totals,
                "calls": [_call_view(c) for c in shown],
                "more_from": following,
            }
        )
    return nodes


def _call_view(call: dict[str, Any]) -> dict[str, Any]:
    own = Totals().plus(call["usage"], call["cost_usd"])
    redacted: dict[str, Any] = redactor.redact_json(call)
    return {**redacted, "totals": own}


def _usage_of(call: ModelCall) -> dict[str, int]:
    return {k: getattr(call, k) for k in _TOKENS}


def _who_acted(store: Store, run: Run, waits: Sequence[Wait]) -> list[str]:
    """How the run started and whose authority it runs with, and who decided its
    approvals."""
    acted = [f"started by {run.trigger}" + (f", as {run.principal}" if run.principal else "")]
    for wait in waits:
        if wait.kind != "approval":
            continue
        request = store.approval_for_step(run.id, wait.step_key)
        if request is not None and request.decided_by:
            acted.append(f"{request.decided_by} {request.status} {wait.step_key}")
    return acted


def _chain(store: Store, run: Run) -> list[ChainLink]:
    """Job -> agent -> human: the runs linked by parent_id, and the people who decided
    their approvals, one level below the run that asked."""
    links = run_views.chain(store, run)
    if len(links) < 2 and not any(w.kind == "approval" for w in store.waits([run.id])):
        return []
    shown: list[ChainLink] = []
    for depth, linked in links:
        shown.append(
            ChainLink(
                depth,
                linked.kind,
                linked.name,
                linked.state.value.lower(),
                linked.id,
                linked.id == run.id,
            )
        )
        for wait in store.waits([linked.id]):
            if wait.kind != "approval":
                continue
            request = store.approval_for_step(linked.id, wait.step_key)
            if request is not None:
                who = request.decided_by or request.who_may_decide()
                label = f"{who}: {request.question}"
                shown.append(ChainLink(depth + 1, "human", label, request.status, None))
    return shown


def _describe(wait: Wait) -> str:
    names = ", ".join(wait.detail.get("names", []) or wait.topics)
    if wait.kind == "approval":
        return f"a human's approval ({wait.step_key})"
    if wait.kind == "sleep":
        return "a timer"
    return f"{wait.kind} {names}".strip()
