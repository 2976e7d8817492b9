"""The app the CLI tests load with `--app cli_app:app`; its database is set per test."""

from __future__ import annotations

from typing import Any

from rota import App

app = App()


@app.job
def greet(ctx: Any, payload: dict[str, Any] | None) -> dict[str, Any]:
    return {"hello": (payload or {}).get("name", "world")}


@app.workflow
async def pipeline(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    numbers = await ctx.step("fetch", lambda n: list(range(1, n + 1)), payload["n"])
    total = await ctx.step("total", sum, numbers)
    return {"total": total}


@app.job
def boom(ctx: Any) -> None:
    raise ValueError("the ledger is closed")


empty = App()  # an app with nothing to run, for the worker's "nothing to serve" error
