"""The app the browser tests serve (`rota serve --app dashboard_app:app`) and `seed`, which
fills its database with runs of each kind. A page's tests add what that page needs here."""

from __future__ import annotations

from typing import Any

from rota import Agent, App, ToolContext, every, tool
from rota.cost import Price
from rota.testing import ScriptedModel, answer, call

PRINCIPALS = {"admin": "root", "operator": "ops", "viewer": "watcher"}


@tool(scopes=["crm:read"])
def lookup(ctx: ToolContext, customer_id: str) -> str:
    """Look up a customer."""
    return f"plan of {customer_id}: gold"


@tool(scopes=["crm:write"])
def wipe(ctx: ToolContext, customer_id: str) -> str:
    """Delete a customer (the agent's principal lacks crm:write: always denied)."""
    return f"wiped {customer_id}"


@tool(requires_approval=True, approvers="finance")
def refund(ctx: ToolContext, customer_id: str, amount_cents: int) -> str:
    """Refund a customer, once a human approves."""
    return f"refunded {amount_cents} to {customer_id}"


def build(database_url: str | None = None) -> App:
    """The app, on `database_url` (the CLI's --database-url when served)."""
    built = App(database_url) if database_url else App()
    for role, name in PRINCIPALS.items():
        built.principal(name, kind="user", roles=[role])
    built.principal("svc-agent", kind="service", scopes=["crm:read"])

    @built.job
    def hello(ctx: Any, payload: Any) -> str:
        return "hi"

    @built.job(retries=0)
    def nightly_report(ctx: Any, payload: Any) -> None:
        raise RuntimeError("report database unreachable")

    model = ScriptedModel(
        "dashboard-reviewer",
        script=[call("lookup", customer_id="acme"), answer("acme is on gold")],
    )
    reviewer = Agent("reviewer", model, "Review the customer.", tools=[lookup])
    built.agent(reviewer, run_as="svc-agent")
    _runs_page_definitions(built)
    _inbox_pages_definitions(built)
    return built


def _runs_page_definitions(built: App) -> None:
    """What the Runs and Run page tests seed (test_runs_pages.py): a job that escalates to
    an agent whose refund a human approves, and a workflow of many steps, the last of
    which may fail."""
    triage_model = ScriptedModel(
        "dashboard-triager",
        script=[
            call("lookup", customer_id="acme"),
            call("wipe", customer_id="acme"),
            call("refund", customer_id="acme", amount_cents=1200),
            answer("refunded acme 12.00"),
        ],
    )
    triager = Agent(
        "triager",
        triage_model,
        "Settle the escalated request.",
        tools=[lookup, wipe, refund],
        price=Price(3, 15),
    )
    built.agent(triager, run_as="svc-agent")

    @built.job(escalate_to="triager")
    def intake(ctx: Any, payload: Any) -> Any:
        return ctx.escalate(payload, reason="a refund needs a person")

    @built.workflow(retries=0)
    async def ingest(ctx: Any, payload: Any) -> None:
        await ctx.step("fetch", lambda: "fetched")
        for n in range(int(payload.get("parts", 1))):
            await ctx.step(f"parse{n}", lambda: {"rows": 3})
        if payload.get("fail"):
            await ctx.step("load", _load)


def _inbox_pages_definitions(built: App) -> None:
    """What the Approvals, Schedules and Costs tests use besides the triager above (whose
    refund waits for a human): an hourly schedule and a shared budget."""

    @built.job(trigger=every("1h"))
    def hourly_sync(ctx: Any, payload: Any) -> str:
        return "synced"

    built.budget(agent="triager", usd=5, per="day")


def _load() -> None:
    raise RuntimeError("constraint violated: duplicate key acme")


app = build()


def seed(target: App) -> None:
    """Three good runs, a failed one and an agent run, all finished."""
    for n in range(3):
        target.run_now("hello", {"n": n})
    target.run_now("nightly_report", {})
    target.run_now("reviewer", {"customer_id": "acme"})
    target.drain()
