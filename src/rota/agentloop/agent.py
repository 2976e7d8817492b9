"""Agent: a model, instructions and tools, run in a loop until it gives an acceptable answer.

An Agent is a definition, checked when it is made (an unknown model or a missing API key
fails here, not at 3 a.m. in a worker). `await agent.run(task)` runs it in memory; registered
on an App (`app.agent(reviewer)`) it runs as a job, and `ctx.agent(reviewer, task)` runs it
inside a workflow. In both durable forms every model call and every tool call is a step of
the run, so a run resumed after a crash replays what was done instead of doing it again.
The definition is `rota.agents.spec.AgentSpec`; the loop lives in `rota.agentloop.loop`.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..agents.spec import AgentSpec
from ..agents.tools import ToolMiddleware, open_tool_sources
from ..agents.types import AgentResult
from ..errors import AgentFailed
from ..observability import traced_agent
from .cache import with_cache
from .chain import compose
from .loop import AgentLoop

if TYPE_CHECKING:
    from ..context import RunContext
    from ..identity.principals import Principal


class Agent(AgentSpec):
    """A model with instructions and tools; see docs/agents.md for the loop's guarantees.
    The definition (and its checks) is AgentSpec; an Agent runs it."""

    async def run(
        self,
        task: Any = None,
        *,
        deps: Any = None,
        ctx: RunContext | None = None,
        step_prefix: str = "",
        principal: Principal | None = None,
        tool_middleware: Sequence[ToolMiddleware] = (),
    ) -> AgentResult:
        """Run the loop to an end. With `ctx`, model and tool calls are durable steps of that
        run (their names start with `step_prefix`) and the run's principal decides which
        tools may be called; without, everything stays in memory and `principal` decides
        (None: only tools that need no scope). `tool_middleware` goes around every tool call
        of this run, after the agent's tool_guards and before its approval gates."""

        def loop(agent: Agent) -> AgentLoop:
            composed = compose(
                agent,
                task,
                deps=deps,
                ctx=ctx,
                prefix=step_prefix,
                principal=principal,
                tool_middleware=tool_middleware,
            )
            return AgentLoop(agent, composed)

        async def run() -> AgentResult:
            if not self.tool_sources:
                return await loop(self).run()
            # Tool sources (MCP servers) are opened for this run only, in this task, and
            # closed when it ends; the loop sees a copy of the agent with their tools added.
            async with open_tool_sources(self.name, self.tools, self.tool_sources) as tools:
                agent = copy.copy(self)
                agent.tools = tools
                return await loop(agent).run()

        traced = traced_agent(self.name, self.model, run)  # an invoke_agent span, if tracing
        if self.cache and ctx is not None:
            return await with_cache(self, task, ctx, step_prefix, traced)
        return await traced()

    def run_sync(
        self, task: Any = None, *, deps: Any = None, principal: Principal | None = None
    ) -> AgentResult:
        """`run` for scripts and notebooks without an event loop."""
        return asyncio.run(self.run(task, deps=deps, principal=principal))

    def job_function(self, deps: Any = None) -> Callable[..., Awaitable[Any]]:
        """The function a job of this agent runs: the payload is the task; anything but
        "succeeded" fails the run with AgentFailed."""

        async def run_agent(ctx: RunContext, task: Any) -> Any:
            result = await self.run(task, deps=deps, ctx=ctx)
            if not result.ok:
                raise AgentFailed(self.name, result.reason, result.error)
            return result.output_json

        run_agent.__name__ = run_agent.__qualname__ = self.name
        run_agent.__doc__ = f"Runs agent {self.name!r}."
        return run_agent
