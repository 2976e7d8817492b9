"""The decision cache (opt-in, `Agent(cache=True, cache_ttl="1h")`).

Identical normalised inputs reuse the earlier decision within the TTL: same model, same
instructions, same tool schemas, same output schema and the same task (JSON with sorted keys,
surrounding whitespace trimmed). A hit makes no model call and spends no tokens; in a durable
run it is recorded as a step (`cache:hit`, naming the run the decision came from), so the run's
history says where its answer came from and a resumed run takes the same answer again. Only
accepted answers (reason "succeeded") are cached. Why opt in: a cached decision is only right
when the answer depends on nothing but these inputs (no clock, no tool reading live data).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..agents.types import AgentResult, Usage, to_json
from ..storage.agent_cache import CachedDecision

if TYPE_CHECKING:
    from ..agents.spec import AgentSpec
    from ..context import RunContext


def cache_key(agent: AgentSpec, task: Any) -> str:
    inputs = {
        "model": agent.model_spec,
        "instructions": agent.instructions.strip(),
        "tools": sorted((to_json(t.spec) for t in agent.tools.values()), key=lambda s: s["name"]),
        "output": agent.output_schema,
        "task": _normalised(task),
    }
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(v) for v in value]
    if hasattr(value, "model_dump"):
        return _normalised(value.model_dump(mode="json"))
    return value


async def with_cache(
    agent: AgentSpec,
    task: Any,
    ctx: RunContext,
    prefix: str,
    run: Callable[[], Awaitable[AgentResult]],
) -> AgentResult:
    """`run()`, unless an earlier accepted decision on the same inputs is still fresh."""
    runtime = ctx.runtime
    store, key = runtime.store, cache_key(agent, task)

    async def lookup() -> dict[str, Any]:
        hit = await runtime.db(store.cached_decision, key, runtime.clock.now())
        if hit is None:
            return {"hit": False}
        return {"hit": True, "from_run": hit.run_id, "text": hit.text, "output": hit.output}

    found = await ctx.step(f"{prefix}cache:lookup", lookup)
    if found["hit"]:
        return _reused(agent, found)
    result = await run()
    if result.ok:
        now = runtime.clock.now()
        decision = CachedDecision(
            key,
            agent.name,
            result.text,
            result.output_json,
            ctx.run_id,
            now,
            now + agent.cache_ttl_s,
        )
        await runtime.db(store.cache_decision, decision)
    return result


def _reused(agent: AgentSpec, found: dict[str, Any]) -> AgentResult:
    output, data = agent.validate_output(json.dumps(found["output"]))
    if agent.output is None:
        output = data = found["text"]
    return AgentResult(
        output=output,
        text=found["text"],
        reason="succeeded",
        usage=Usage(requests=0),
        steps=0,
        messages=(),
        output_json=data,
        cached=True,
    )
