"""The app the chaos suite serves with `rota worker`, `rota scheduler` and `rota serve`.

Its work, each kind checked afterwards by invariants.py:

- `chaos_flow`: a three-step workflow. Each step execution records itself in `chaos_exec`
  and applies a side effect keyed by the step's idempotency key to `chaos_effects` (the
  "remote system", which refuses a key it has seen: `ON CONFLICT DO NOTHING`), then sleeps a
  while so that faults land mid-step.
- `chaos_tick`: every second, from two schedulers.
- `chaos_hook`: a Standard Webhooks endpoint, signed with CHAOS_HOOK_SECRET.
- `chaos-agent`: an agent on the fake Anthropic server (CHAOS_MODEL_URL) calling the
  `apply_effect` tool twice, under a budget of requests.
- `chaos_approval`: a workflow that parks on an approval, decided by the suite's script.
- `chaos_secret`: reads a vault secret as `svc-chaos` and logs and returns it; rota must
  redact it everywhere.

The side tables live in a database of the test's own (CHAOS_SIDE_URL), reached directly,
not through the faulty proxy; their writes retry until that database answers, like a remote
system that is up.

CHAOS_BREAK_FENCE=1 disables the lease fence on step checkpoints in this process (a test
hook, not a rota option): the suite must then find a violated invariant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
from typing import Any

import psycopg

from rota import Agent, App, Budget, Price, RunContext, ToolContext, current_step, every, tool
from rota.scheduling.webhooks import on_webhook
from rota.storage import runs as run_queries

AGENT = "chaos-agent"
MODEL = "anthropic:claude-haiku-4-5"
HOOK = "chaos"
HOOK_SECRET_ENV = "CHAOS_HOOK_SECRET"
MODEL_URL_ENV = "CHAOS_MODEL_URL"
SIDE_URL_ENV = "CHAOS_SIDE_URL"
STEP_S_ENV = "CHAOS_STEP_S"  # "low,high": how long a workflow step sleeps
BREAK_FENCE_ENV = "CHAOS_BREAK_FENCE"
SECRET_NAME = "chaos_token"
SECRET_PRINCIPAL = "svc-chaos"
APPROVER_GROUP = "ops"
APPROVER = "chaos-approver"  # decides the approvals, as the suite's script
STEPS = ("s1", "s2", "s3")
AGENT_REQUESTS = 4  # the agent needs 3 model calls; its budget allows 4
SIDE_RETRY_S = 300.0

log = logging.getLogger("chaos_app")

SIDE_TABLES = (
    """CREATE TABLE chaos_exec (id {serial} PRIMARY KEY, run_id TEXT NOT NULL,
        step TEXT NOT NULL, pid INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE chaos_effects (key TEXT PRIMARY KEY, run_id TEXT NOT NULL,
        kind TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE chaos_effect_calls (id {serial} PRIMARY KEY, key TEXT NOT NULL,
        run_id TEXT NOT NULL)""",
)


class SideSystem:
    """The workload's own records, outside rota: one connection per process, under a lock,
    reopened and retried while its database is away."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = not url.startswith("postgresql")
        self._conn: Any = None
        self._lock = threading.Lock()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + SIDE_RETRY_S
        while True:
            try:
                with self._lock:
                    return self._query(sql, params)
            except (psycopg.OperationalError, sqlite3.OperationalError):
                with self._lock:
                    self._reset()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._conn is None:
            if self.sqlite:
                self._conn = sqlite3.connect(
                    self.url, isolation_level=None, timeout=30, check_same_thread=False
                )
            else:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        if self.sqlite:
            sql = sql.replace("%s", "?")
        cursor = self._conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []

    def _reset(self) -> None:
        if self._conn is not None:
            # a broken connection may fail to close; it is dropped anyway
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._reset()

    def install(self) -> None:
        serial = "INTEGER" if self.sqlite else "BIGSERIAL"
        for statement in SIDE_TABLES:
            self.query(statement.format(serial=serial))

    def record_execution(self, run_id: str, step: str) -> int:
        [(execution,)] = self.query(
            "INSERT INTO chaos_exec (run_id, step, pid, at) VALUES (%s, %s, %s, %s) RETURNING id",
            (run_id, step, os.getpid(), time.time()),
        )
        return int(execution)

    def apply_effect(self, key: str, run_id: str, kind: str) -> None:
        """The remote system's side effect: applied once per idempotency key."""
        self.query("INSERT INTO chaos_effect_calls (key, run_id) VALUES (%s, %s)", (key, run_id))
        self.query(
            "INSERT INTO chaos_effects (key, run_id, kind, at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (key) DO NOTHING",
            (key, run_id, kind, time.time()),
        )


def break_lease_fence() -> None:
    """Test hook: step checkpoints no longer check that the writer holds the run's lease."""
    fenced = "AND lease_token = :lease_token AND state = :running {share}"
    assert fenced in run_queries._SAVE_STEP, "the fence this hook removes has moved"
    run_queries._SAVE_STEP = run_queries._SAVE_STEP.replace(fenced, "{share}")


def make_app(database_url: str | None = None) -> App:
    app = App(database_url)
    app.principal(SECRET_PRINCIPAL)
    app.principal(APPROVER, kind="user", roles=[f"approver:{APPROVER_GROUP}"])
    side = SideSystem(os.environ.get(SIDE_URL_ENV, ""))
    low, high = (float(x) for x in os.environ.get(STEP_S_ENV, "0.02,0.2").split(","))

    def effect_step() -> dict[str, int]:
        info = current_step()
        execution = side.record_execution(info.run_id, info.key)
        side.apply_effect(info.idempotency_key, info.run_id, "step")
        time.sleep(random.uniform(low, high))
        return {"execution": execution}

    @app.workflow(name="chaos_flow")
    async def chaos_flow(ctx: RunContext, n: int) -> dict[str, Any]:
        """Three checkpointed steps, each with a keyed side effect."""
        results = {step: await ctx.step(step, effect_step) for step in STEPS}
        return {"n": n, **results}

    @app.workflow(name="chaos_approval")
    async def chaos_approval(ctx: RunContext, n: int) -> dict[str, Any]:
        """A step, an approval decided by the suite's script, a step."""
        before = await ctx.step("prepare", effect_step)
        decision = await ctx.approval(f"ship order {n}?", approvers=APPROVER_GROUP)
        after = await ctx.step("ship", effect_step)
        return {"n": n, "approved": decision.approved, "prepare": before, "ship": after}

    @app.job(schedule=every("1s"), overlap="allow")
    def chaos_tick(ctx: Any) -> None:
        """Fires every second under the schedulers."""
        return None

    @app.job(trigger=on_webhook(HOOK, secret_env=HOOK_SECRET_ENV))
    def chaos_hook(ctx: Any, payload: Any) -> Any:
        """A signed delivery's run."""
        return payload

    @app.job(run_as=SECRET_PRINCIPAL)
    def chaos_secret(ctx: RunContext, n: int) -> dict[str, Any]:
        """Reads the vault secret, logs it and returns it: rota redacts both."""
        token = ctx.secret(SECRET_NAME)
        log.warning("chaos_secret %d read token %s", n, token)
        return {"n": n, "token": token}

    @tool
    async def apply_effect(ctx: ToolContext, n: int) -> str:
        """Apply effect number `n` of the task.

        Args:
            n: Which effect this is (1, 2, ...).
        """
        assert ctx.run_id is not None
        key = ctx.idempotency_key
        await asyncio.to_thread(side.apply_effect, key, ctx.run_id, "tool")
        return f"effect {n} applied"

    app.agent(
        Agent(
            name=AGENT,
            model=MODEL,
            base_url=os.environ.get(MODEL_URL_ENV, "http://127.0.0.1:9"),
            instructions="Apply effect 1, then effect 2, then say that you are done.",
            tools=[apply_effect],
            max_steps=5,
            price=Price(input=1, output=5),
            budget=Budget(requests=AGENT_REQUESTS),
        )
    )
    return app


if os.environ.get(BREAK_FENCE_ENV) == "1":
    break_lease_fence()


def __getattr__(name: str) -> App:
    """`app`, made when `rota --app chaos_app:app` first asks for it (the suite's own process
    imports this module for its names only)."""
    if name != "app":
        raise AttributeError(name)
    made = make_app(os.environ.get("ROTA_DATABASE_URL"))
    globals()["app"] = made
    return made
