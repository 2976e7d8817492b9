"""Tool middleware: the extension point around every tool call (rota.agents.tools.run_tool)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from rota import ToolContext, tool
from rota.agents.tools import (
    CallNext,
    Tool,
    ToolDenied,
    ToolInvocation,
    ToolMiddleware,
    guarded,
    run_tool,
)
from rota.agents.types import ToolCall, ToolResult

calls: list[tuple[str, int]] = []


@tool
def add(ctx: ToolContext[None], a: int, b: int) -> int:
    """Add two numbers."""
    calls.append((ctx.idempotency_key, a + b))
    return a + b


def _context() -> ToolContext[None]:
    return ToolContext(
        deps=None,
        run_id="run-1",
        principal=None,
        idempotency_key="run-1:tool:add",
        agent="calculator",
        tool="add",
        call_id="c1",
    )


def _run(t: Tool, arguments: dict[str, Any], middleware: list[ToolMiddleware]) -> ToolResult:
    calls.clear()
    return asyncio.run(run_tool(t, ToolCall("c1", t.name, arguments), _context(), middleware))


class CountCalls:
    """A custom middleware: counts the calls it wraps and the ones that failed, and
    records the order it ran in (into a shared log)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.calls = self.errors = 0

    async def __call__(self, inv: ToolInvocation, call_next: CallNext) -> ToolResult:
        self.calls += 1
        self.log.append(f"{self.name}>{inv.tool.name}({inv.values})")
        result = await call_next(inv)
        self.errors += result.is_error
        self.log.append(f"{self.name}<{result.content}")
        return result


def test_a_custom_middleware_wraps_a_real_tool_call_outermost_first() -> None:
    log: list[str] = []
    outer, inner = CountCalls("outer", log), CountCalls("inner", log)

    result = _run(add, {"a": 2, "b": 3}, [outer, inner])

    assert result == ToolResult("c1", "5")
    assert calls == [("run-1:tool:add", 5)]  # the tool ran once, with its context
    assert (outer.calls, inner.calls, outer.errors) == (1, 1, 0)
    assert log == [
        "outer>add({'a': 2, 'b': 3})",
        "inner>add({'a': 2, 'b': 3})",
        "inner<5",
        "outer<5",
    ]


def test_middleware_sees_only_calls_whose_arguments_validated() -> None:
    counter = CountCalls("count", [])

    result = _run(add, {"a": "two"}, [counter])

    assert result.is_error
    assert "invalid arguments for tool 'add'" in result.content
    assert counter.calls == 0
    assert calls == []


def test_a_middleware_refuses_by_raising_and_the_tool_is_not_run() -> None:
    async def deny_big(inv: ToolInvocation, call_next: CallNext) -> ToolResult:
        if inv.values["a"] > 100:
            raise ToolDenied("numbers over 100 need a human")
        return await call_next(inv)

    counter = CountCalls("count", [])

    refused = _run(add, {"a": 101, "b": 1}, [counter, deny_big])
    assert refused == ToolResult(
        "c1", "tool 'add' was not run: ToolDenied: numbers over 100 need a human", True
    )
    assert calls == []
    assert (counter.calls, counter.errors) == (1, 1)  # the outer middleware saw the refusal

    assert _run(add, {"a": 1, "b": 1}, [counter, deny_big]).content == "2"
    assert calls == [("run-1:tool:add", 2)]


def test_a_middleware_may_change_the_invocation_and_the_result() -> None:
    async def double_b(inv: ToolInvocation, call_next: CallNext) -> ToolResult:
        changed = dataclasses.replace(inv, values={**inv.values, "b": inv.values["b"] * 2})
        result = await call_next(changed)
        return dataclasses.replace(result, content=f"sum={result.content}")

    assert _run(add, {"a": 1, "b": 2}, [double_b]) == ToolResult("c1", "sum=5")


def test_a_middleware_failing_after_the_call_reports_the_failure() -> None:
    async def broken(inv: ToolInvocation, call_next: CallNext) -> ToolResult:
        await call_next(inv)
        raise RuntimeError("lost the result")

    result = _run(add, {"a": 1, "b": 2}, [broken])

    assert result == ToolResult("c1", "tool 'add' failed: RuntimeError: lost the result", True)
    assert calls == [("run-1:tool:add", 3)]


def test_a_guard_is_the_middleware_guarded_and_tool_run_keeps_its_signature() -> None:
    seen: list[dict[str, Any]] = []

    def no_negatives(t: Tool, values: dict[str, Any], ctx: ToolContext[Any]) -> None:
        seen.append(values)
        if values["a"] < 0:
            raise ToolDenied("negative")

    counter = CountCalls("count", [])
    assert _run(add, {"a": -1, "b": 1}, [counter, guarded(no_negatives)]).content == (
        "tool 'add' was not run: ToolDenied: negative"
    )
    assert calls == []

    calls.clear()
    result = asyncio.run(
        add.run(ToolCall("c2", "add", {"a": 4, "b": 5}), _context(), [no_negatives])
    )
    assert result == ToolResult("c2", "9")
    assert seen == [{"a": -1, "b": 1}, {"a": 4, "b": 5}]


# -- a custom model wrapper ------------------------------------------------------------------


class CountingModel:
    """A Model that wraps another and counts the calls that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.provider, self.name = inner.provider, inner.name
        self.requests: list[Any] = []

    async def complete(self, request: Any) -> Any:
        self.requests.append(request)
        return await self.inner.complete(request)


@tool(scopes=["billing:refund"])
def refund(ctx: ToolContext[None], amount_cents: int) -> str:
    """Refund an amount."""
    return "refunded"


def test_a_custom_model_wrapper_is_the_agents_model_at_the_bottom_of_its_chain() -> None:
    from rota import Agent
    from rota.testing import ScriptedModel, call, say

    scripted = ScriptedModel("counted", script=[call("add", a=1, b=2), say("3")])
    counting = CountingModel(scripted)
    agent = Agent("counter", counting, "Add.", tools=[add, refund])

    result = asyncio.run(agent.run("1 + 2?"))

    assert result.ok and result.steps == 2
    assert len(counting.requests) == scripted.calls == 2
    # Inside the chain: it sees the request after the permitted-tools layer (no principal
    # holds billing:refund here, so the model is not shown that tool).
    assert [t.name for t in counting.requests[0].tools] == ["add"]
