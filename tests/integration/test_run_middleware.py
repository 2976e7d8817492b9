"""Run middleware on SQLite and PostgreSQL: an app's own middleware wraps every execution
its workers make (here through app.drain), sees each run's name, principal and outcome, and
runs inside the standard admission, which still refuses a disabled principal."""

from __future__ import annotations

from typing import Any

import pytest

from rota import App, RunState
from rota.identity import admin
from rota.storage.audit import RUN_REFUSED, RUN_STARTED
from rota.worker import RunCall, RunMiddleware
from rota.worker.middleware import Execute

HUMAN = admin.Actor("alice", "human")


class CountRuns:
    """Counts executions and records (name, principal, outcome) of each."""

    def __init__(self) -> None:
        self.executions = 0
        self.seen: list[tuple[str, str | None, str]] = []

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        self.executions += 1
        principal = call.principal.name if call.principal else None
        try:
            value = await call_next(call)
        except Exception as exc:
            self.seen.append((call.run.name, principal, f"raised {type(exc).__name__}"))
            raise
        self.seen.append((call.run.name, principal, f"returned {value!r}"))
        return value


def actions(app: App, run_id: str) -> list[str]:
    records = sorted(app.store.audit_records(limit=1000), key=lambda r: r.seq)
    return [r.action for r in records if r.run_id == run_id]


def test_an_apps_run_middleware_sees_every_execution_and_its_outcome(app: App) -> None:
    counter = CountRuns()
    installed: RunMiddleware = counter  # the protocol an app's middleware implements
    app.run_middleware.append(installed)
    app.principal("svc-billing")
    attempts: list[int] = []

    @app.job(run_as="svc-billing")
    def charge(ctx: Any, payload: dict[str, int]) -> int:
        return payload["amount"] * 2

    @app.job(retries=1, retry_backoff=0)
    def flaky(ctx: Any) -> str:
        attempts.append(ctx.run.attempt)
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    charged = app.run_now("charge", {"amount": 21})
    retried = app.run_now("flaky")
    app.drain()

    assert charged.get().state == RunState.SUCCEEDED
    assert retried.get().state == RunState.SUCCEEDED and attempts == [1, 2]
    assert counter.executions == 3
    assert sorted(counter.seen) == [
        ("charge", "svc-billing", "returned 42"),  # inside admission: the principal is known
        ("flaky", None, "raised ValueError"),
        ("flaky", None, "returned 'ok'"),
    ]
    # Each execution is still audited: the standard middleware runs around the app's own.
    assert actions(app, charged.id) == [RUN_STARTED]
    assert actions(app, retried.id) == [RUN_STARTED, RUN_STARTED]


def test_the_standard_admission_still_refuses_a_disabled_principal(app: App) -> None:
    counter = CountRuns()
    app.run_middleware.append(counter)
    app.principal("svc-billing")
    ran: list[str] = []

    @app.job(run_as="svc-billing", retries=3)
    def charge(ctx: Any) -> None:
        ran.append(ctx.run_id)

    handle = app.run_now("charge")
    admin.set_disabled(app.store, "svc-billing", HUMAN, True)
    app.drain()

    run = handle.get()
    assert ran == [] and run.state == RunState.FAILED and run.attempt == 1  # no retry
    assert run.error is not None and run.error["type"] == "PrincipalDisabled"
    assert actions(app, handle.id) == [RUN_REFUSED]
    assert counter.executions == 0  # refused before the app's own middleware


@pytest.mark.parametrize("fails", [False, True])
def test_a_worker_made_by_the_app_has_the_standard_middleware_then_the_apps(
    app: App, fails: bool
) -> None:
    counter = CountRuns()
    app.run_middleware.append(counter)

    @app.job
    def noop(ctx: Any) -> None:
        if fails:
            raise RuntimeError("boom")

    worker = app.worker()
    names = [type(m).__name__ for m in worker.middleware]
    assert names == ["ObserveRuns", "AdmitRunAs", "AuditRunStarted", "CountRuns"]
    handle = app.run_now("noop")
    app.drain()
    assert handle.get().state == (RunState.FAILED if fails else RunState.SUCCEEDED)
    outcome = "raised RuntimeError" if fails else "returned None"
    assert counter.seen == [("noop", None, outcome)]
