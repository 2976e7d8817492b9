"""The app the browser tests serve (`rota serve --app dashboard_app:app`) and `seed`, which
fills its database with runs of each kind. A page's tests add what that page needs here."""

from __future__ import annotations

from typing import Any

from rota import Agent, App, ToolContext, tool
from rota.testing import ScriptedModel, answer, call

PRINCIPALS = {"admin": "root", "operator": "ops", "viewer": "watcher"}


@tool(scopes=["crm:read"])
def lookup(ctx: ToolContext, customer_id: str) -> str:
    """Look up a customer."""
    return f"plan of {customer_id}: gold"


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
    return built


app = build()


def seed(target: App) -> None:
    """Three good runs, a failed one and an agent run, all finished."""
    for n in range(3):
        target.run_now("hello", {"n": n})
    target.run_now("nightly_report", {})
    target.run_now("reviewer", {"customer_id": "acme"})
    target.drain()
