"""Prometheus: `/metrics` parses with prometheus_client's own parser, and its counters move by
exactly what a scripted workload did, on SQLite and PostgreSQL; `rota worker --metrics-port`
serves the same text from a worker process."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from rota import Agent, App, FakeClock, every, on_webhook, tool
from rota.api import create_api
from rota.cost import Price
from rota.scheduler import Scheduler
from rota.testing import ScriptedModel, call, say

ROTA = Path(sys.executable).parent / "rota"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (the parser refuses bad text)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def metered(database_url: str, clock: FakeClock) -> Iterator[tuple[App, TestClient]]:
    app = App(database_url, clock=clock)
    with TestClient(create_api(app)) as client:
        yield app, client
    app.close()


def scrape(client: TestClient, clock: FakeClock) -> Samples:
    clock.advance(60)  # past the store gauges' cache
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_metrics_counters_move_by_exactly_what_the_workload_did(
    metered: tuple[App, TestClient],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, client = metered
    monkeypatch.setenv("MX_HOOK_SECRET", "whsec_" + "A" * 43 + "=")
    app.principal("mx-bot", scopes=[])

    @app.job
    def mx_ok(ctx: Any) -> str:
        return "fine"

    @app.job
    def mx_bad(ctx: Any) -> None:
        raise RuntimeError("always")

    @app.job(retries=1)
    def mx_flaky(ctx: Any) -> None:
        raise RuntimeError("twice")

    @app.workflow
    async def mx_flow(ctx: Any) -> int:
        first = await ctx.step("first", lambda: 1)
        return int(await ctx.step("second", lambda: first + 1))

    @app.job(trigger=on_webhook("mx-hook", secret_env="MX_HOOK_SECRET"))
    def mx_hooked(ctx: Any, payload: Any) -> None:
        pass

    @tool(scopes=["mx:write"])
    def mx_refund(order: str) -> str:
        return "refunded"

    turns = iter([call(mx_refund, order="o-1"), say("done")])
    model = ScriptedModel("mx-model", fn=lambda *_: next(turns), tokens=(2000, 500))
    app.agent(
        Agent("mx-agent", model, "Go.", tools=[mx_refund], price=Price(input=5, output=20)),
        run_as="mx-bot",
    )
    app.budget(agent="mx-agent", usd=1, per="day")

    before = scrape(client, clock)
    for _ in range(3):
        app.run_now("mx_ok")
    for _ in range(2):
        app.run_now("mx_bad")
    app.run_now("mx_flaky")
    app.run_now("mx_flow")
    app.run_now("mx-agent", "refund o-1")
    with caplog.at_level(logging.INFO, logger="rota.run"):
        app.drain()
    for _ in range(4):  # queued, not run: the queue gauges see them
        app.run_now("mx_ok")
    unsigned = client.post("/hooks/mx-hook", content=b"{}")
    assert unsigned.status_code == 400
    assert client.post("/hooks/no-such-hook", content=b"{}").status_code == 404
    after = scrape(client, clock)

    finished = "rota_runs_finished_total"
    assert moved(before, after, finished, job="mx_ok", kind="job", state="SUCCEEDED") == 3
    assert moved(before, after, finished, job="mx_bad", kind="job", state="FAILED") == 2
    assert moved(before, after, finished, job="mx_flaky", kind="job", state="FAILED") == 1
    assert moved(before, after, "rota_run_retries_total", job="mx_flaky", kind="job") == 1
    assert moved(before, after, finished, job="mx_flow", kind="workflow", state="SUCCEEDED") == 1
    assert moved(before, after, finished, job="mx-agent", kind="agent", state="SUCCEEDED") == 1
    step = "rota_step_duration_seconds_count"
    for name in ("first", "second"):
        assert moved(before, after, step, job="mx_flow", step=name, state="succeeded") == 1
    duration = "rota_run_duration_seconds_count"
    assert moved(before, after, duration, job="mx_ok", kind="job", outcome="succeeded") == 3
    assert moved(before, after, duration, job="mx_flaky", kind="job", outcome="retried") == 1

    # Two model calls of 2000 input and 500 output tokens each, at $5/$20 per million.
    tokens = "rota_agent_tokens_total"
    spec = "scripted:mx-model"
    assert moved(before, after, tokens, agent="mx-agent", model=spec, type="input") == 4000
    assert moved(before, after, tokens, agent="mx-agent", model=spec, type="output") == 1000
    usd = moved(before, after, "rota_agent_cost_usd_total", agent="mx-agent", model=spec)
    assert usd == pytest.approx(0.04)
    assert (
        moved(before, after, "rota_tool_calls_denied_total", agent="mx-agent", tool="mx_refund")
        == 1
    )

    # Each run that succeeded is one log line; an agent's names its calls and their cost.
    lines = [r.getMessage() for r in caplog.records if "SUCCEEDED" in r.getMessage()]
    assert sum(" of mx_ok SUCCEEDED in " in line for line in lines) == 3
    (agent_line,) = [line for line in lines if " of mx-agent " in line]
    assert agent_line.endswith(", 2 model calls, $0.0400"), agent_line

    rejected = "rota_webhook_rejections_total"
    reason = unsigned.json()["error"]
    assert moved(before, after, rejected, hook="mx-hook", status="400", reason=reason) == 1
    assert moved(before, after, rejected, hook="_unknown", status="404", reason="unknown_hook") == 1

    # Gauges, read from the store at the scrape.
    assert value(after, "rota_store_up") == 1
    assert value(after, "rota_queue_depth", job="mx_ok") == 4
    assert value(after, "rota_runs_active", job="mx_ok", kind="job", state="ENQUEUED") == 4
    assert value(after, "rota_approvals_waiting") == 0
    budget = {"budget": "agent:mx-agent", "per": "day"}
    assert value(after, "rota_budget_spent", **budget, unit="usd") == pytest.approx(0.04)
    assert value(after, "rota_budget_limit", **budget, unit="usd") == 1
    clock.advance(30)  # queued at the first advance before `after`: 60 + 30 + 60 seconds ago
    oldest = value(scrape(client, clock), "rota_queue_oldest_due_age_seconds", job="mx_ok")
    assert oldest == pytest.approx(150)


def test_schedule_lateness_and_skipped_ticks_are_observed(
    metered: tuple[App, TestClient], clock: FakeClock
) -> None:
    app, client = metered

    @app.job(schedule=every("10s"), overlap="allow")
    def mx_every(ctx: Any) -> None:
        pass

    @app.job(schedule=every("10s"))  # overlap="skip": the first run is still queued
    def mx_skips(ctx: Any) -> None:
        pass

    scheduler = Scheduler(app)
    scheduler.sync()
    clock.advance(10)
    scheduler.tick()  # one run of each is queued
    before = scrape(client, clock)  # the clock moves 60s: six more fire times are due
    scheduler.tick()
    decided = clock.now()
    after = scrape(client, clock)
    ticks = [t for t in app.store.ticks("mx_every") if t.decided_at == decided]
    assert len(ticks) == 6 and all(t.outcome == "enqueued" for t in ticks)
    lateness = "rota_schedule_lateness_seconds"
    assert moved(before, after, f"{lateness}_count", schedule="mx_every") == 6
    # A tick decided ahead of its fire time (the scheduler's lookahead) is 0 late.
    late = sum(max(0.0, t.decided_at - t.fire_at) for t in ticks)
    assert late > 0
    assert moved(before, after, f"{lateness}_sum", schedule="mx_every") == pytest.approx(late)
    skipped = "rota_schedule_ticks_skipped_total"
    assert moved(before, after, skipped, schedule="mx_skips", reason="overlap") == 6


def test_metrics_refuses_query_parameters_with_a_json_error(
    metered: tuple[App, TestClient],
) -> None:
    _, client = metered
    response = client.get("/metrics?format=json")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "format" in response.json()["message"]


# -- a worker process ------------------------------------------------------------------------

WORKER_APP = """
from rota import App

app = App()

@app.job
def mx_proc(ctx):
    return "ok"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_serves_its_metrics_on_metrics_port(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(WORKER_APP))
    env = {**os.environ, "ROTA_DATABASE_URL": sqlite_url}
    migrate = subprocess.run([str(ROTA), "db", "migrate"], cwd=tmp_path, env=env, timeout=60)
    assert migrate.returncode == 0
    for _ in range(2):
        ran = subprocess.run([str(ROTA), "run", "mx_proc"], cwd=tmp_path, env=env, timeout=60)
        assert ran.returncode == 0
    port = free_port()
    worker = subprocess.Popen(
        [str(ROTA), "worker", "--metrics-port", str(port), "--grace", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples = _scrape_until(port, worker, "rota_runs_finished_total", job="mx_proc")
        assert (
            value(samples, "rota_runs_finished_total", job="mx_proc", kind="job", state="SUCCEEDED")
            == 2
        )
        assert value(samples, "rota_store_up") == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode in (0, 128 + signal.SIGTERM), err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out + err


def _scrape_until(port: int, worker: subprocess.Popen[str], name: str, **labels: str) -> Samples:
    """Scrape until the worker has finished both runs (no timing: until it says so)."""
    while True:
        if worker.poll() is not None:
            out, err = worker.communicate()
            pytest.fail(f"the worker exited ({worker.returncode}): {out}\n{err}")
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.TransportError:
            time.sleep(0.05)  # not listening yet
            continue
        samples = parse(text)
        done = sum(
            v for (n, ls), v in samples.items() if n == name and ("job", labels["job"]) in ls
        )
        if done >= 2:
            return samples
        time.sleep(0.05)
