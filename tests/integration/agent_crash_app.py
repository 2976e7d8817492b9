"""The app the agent crash test runs in a real worker process, which it then SIGKILLs.

`crash-agent` is an Anthropic agent (pointed at the test's FakeAnthropicServer through
AGENT_CRASH_BASE_URL) with one tool, `record_step`. Each execution of the tool first records
itself in `agent_tool_executions` (its own table, written through its own connection,
outside rota) and then returns. With AGENT_CRASH_HOLD=1 the tool's execution for step 2
blocks after recording itself, forever: the first worker is SIGKILLed there, right after the
server answered the second model call and rota checkpointed it. A fresh worker started
without the hold resumes the run.

Run as a script, it is one worker: `ROTA_DATABASE_URL=... python agent_crash_app.py`.
"""

from __future__ import annotations

import asyncio
import os

from side_db import SideDb, run_worker_until_sigterm

from rota import Agent, App, Price, ToolContext, tool

AGENT = "crash-agent"
MODEL = "anthropic:claude-haiku-4-5"  # a real provider, priced here (not by package data)
BASE_URL_ENV = "AGENT_CRASH_BASE_URL"
HOLD_ENV = "AGENT_CRASH_HOLD"  # "1": the tool's step-2 execution never returns
HOLD_STEP = 2
LEASE_S = 1.5
POLL_INTERVAL_S = 0.1

_TABLE = """CREATE TABLE agent_tool_executions (
    id {serial} PRIMARY KEY,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL)"""


class ToolLog(SideDb):
    """Tool executions, through one autocommit connection of its own (not rota's)."""

    def install(self) -> None:
        serial = "INTEGER" if self.url.dialect == "sqlite" else "BIGSERIAL"
        self._query(_TABLE.format(serial=serial))

    def record(self, run_id: str, step: int, pid: int, idempotency_key: str) -> None:
        self._query(
            "INSERT INTO agent_tool_executions (run_id, step, pid, idempotency_key) "
            "VALUES (%s, %s, %s, %s)",
            (run_id, step, pid, idempotency_key),
        )

    def executions(self) -> list[tuple[str, int, int, str]]:
        """Every execution as (run_id, step, pid, idempotency key), in order."""
        rows = self._query(
            "SELECT run_id, step, pid, idempotency_key FROM agent_tool_executions ORDER BY id"
        )
        return [(r, int(s), int(p), k) for r, s, p, k in rows]


def make_app(database_url: str | None = None, base_url: str | None = None) -> App:
    app = App(database_url)
    log = ToolLog(app.database_url.original)
    hold = os.environ.get(HOLD_ENV) == "1"

    @tool
    async def record_step(ctx: ToolContext, step: int) -> str:
        """Record that step `step` of the task was done.

        Args:
            step: Which step this is (1, 2, ...).
        """
        assert ctx.run_id is not None
        await asyncio.to_thread(log.record, ctx.run_id, step, os.getpid(), ctx.idempotency_key)
        if hold and step == HOLD_STEP:
            await asyncio.Event().wait()  # until SIGKILL
        return f"step {step} recorded"

    agent = Agent(
        name=AGENT,
        model=MODEL,
        base_url=base_url or os.environ[BASE_URL_ENV],
        instructions="Record step 1, then step 2, then say that you are done.",
        tools=[record_step],
        max_steps=5,
        price=Price(input=1, output=5),
    )
    app.agent(agent)
    return app


def main() -> None:
    run_worker_until_sigterm(make_app(), concurrency=4, lease_s=LEASE_S, poll_s=POLL_INTERVAL_S)


if __name__ == "__main__":
    main()
