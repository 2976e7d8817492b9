"""Acceptance: durable workflows survive workers being SIGKILLed at random moments.

Real worker processes (tests/integration/crash_app.py) run 240 three-step workflows whose
steps log every execution to a table of their own. While they work, the test SIGKILLs a
busy worker at random points of progress several times and starts a replacement each time.
Then it checks, against rota's checkpoints, that:

- no run was lost: exactly the enqueued runs exist, and every one SUCCEEDED;
- every checkpoint names an execution that really happened, in the worker that wrote it;
- a step ran more than once only when a kill interrupted it: every execution other than
  the checkpointed one was made by a killed worker (at-least-once for interrupted steps);
- a completed step never ran again: each step's checkpoint was written exactly once (triggers
  on rota_steps log every write), its execution was the step's newest when it was written,
  and no execution of the step was recorded after it; no step began before the previous
  step's checkpointed execution;
- each run's result is built from its checkpointed step results (resumed runs replayed them).

It also checks that the kills did interrupt work (re-executed steps, runs resumed from
another worker's checkpoints), so that it cannot pass vacuously. Set ROTA_CRASH_SEED to
replay a failing schedule of kills (the seed is printed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from worker_procs import WorkerProcesses as Workers

from rota import App

HERE = Path(__file__).resolve().parent
CRASH_APP = HERE / "crash_app.py"

N_RUNS = 240
N_WORKERS = 3
N_KILLS = 5
# Kills happen when this share of the runs has finished, at a random point of each band.
FIRST_KILL_AT, LAST_KILL_AT = 0.05, 0.75
FINISH_DEADLINE_S = 120.0
STEP_DEADLINE_S = 60.0  # for any single wait inside the kill schedule


def _load_crash_app() -> ModuleType:
    # By path, so that it works whether or not tests/ are packages.
    spec = importlib.util.spec_from_file_location("rota_crash_app", CRASH_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_app = _load_crash_app()


def _wait_for(
    what: str,
    ready: Callable[[], Any],
    workers: Workers,
    timeout: float = STEP_DEADLINE_S,
    poll: float = 0.02,
    explain: Callable[[], str] = str,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        workers.check_alive()
        if time.monotonic() >= deadline:
            pytest.fail(
                f"timed out after {timeout:g}s waiting for {what}\n{explain()}\n{workers.tail()}"
            )
        time.sleep(poll)


def _unfinished(app: App) -> str:
    now = time.time()
    runs = app.runs(states=["ENQUEUED", "RUNNING", "WAITING"], limit=20)
    return "unfinished runs:\n" + "\n".join(
        f"  {r.id} {r.state.value} attempt={r.attempt} reclaims={r.reclaims} "
        f"owner={r.lease_owner} lease_left={(r.lease_expires_at or now) - now:.1f}s"
        for r in runs
    )


def _finished(app: App) -> int:
    counts = app.store.count_states([crash_app.WORKFLOW])
    return sum(counts.get(s, 0) for s in ("SUCCEEDED", "FAILED", "CANCELLED"))


def _busy_workers(app: App, workers: Workers) -> list[subprocess.Popen[bytes]]:
    """Live workers that hold at least one run right now (lease owner is host:pid:suffix)."""
    rows = app.store.conn().execute(
        "SELECT DISTINCT lease_owner FROM rota_runs WHERE state = 'RUNNING'"
    )
    pids = {int(r["lease_owner"].rsplit(":", 2)[1]) for r in rows if r["lease_owner"]}
    return [p for p in workers.live if p.pid in pids]


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("ROTA_CRASH_SEED") or random.randrange(2**32))
    print(f"ROTA_CRASH_SEED={value}")
    return value


@pytest.fixture
def crash_setup(database_url: str, tmp_path: Path) -> Iterator[tuple[App, Any, Workers]]:
    app = crash_app.make_app(database_url)
    app.store  # noqa: B018 -- opening the store migrates it
    log = crash_app.ExecutionLog(database_url)
    log.install()
    workers = Workers(CRASH_APP, {**os.environ, "ROTA_DATABASE_URL": database_url}, tmp_path)
    try:
        yield app, log, workers
    finally:
        workers.cleanup()
        log.close()
        app.close()


@pytest.mark.slow
def test_sigkilled_workers_lose_no_run_and_rerun_no_completed_step(
    crash_setup: tuple[App, Any, Workers], seed: int
) -> None:
    app, log, workers = crash_setup
    rng = random.Random(seed)
    handles = app.run_many(crash_app.WORKFLOW, [{"n": n} for n in range(N_RUNS)])
    enqueued = {h.id for h in handles}
    assert len(enqueued) == N_RUNS

    for _ in range(N_WORKERS):
        workers.start()

    # Kill a busy worker at a random point of each progress band, then replace it.
    band = (LAST_KILL_AT - FIRST_KILL_AT) / N_KILLS
    for k in range(N_KILLS):
        threshold = int(N_RUNS * (FIRST_KILL_AT + band * (k + rng.random())))
        _wait_for(
            f"{threshold} finished runs before kill {k + 1}",
            lambda t=threshold: _finished(app) >= t,
            workers,
        )
        time.sleep(rng.uniform(0, 0.05))
        busy = _wait_for(
            f"a busy worker to kill (kill {k + 1})", lambda: _busy_workers(app, workers), workers
        )
        workers.kill(rng.choice(busy))
        workers.start()

    _wait_for(
        "every run to finish",
        lambda: _finished(app) == N_RUNS,
        workers,
        timeout=FINISH_DEADLINE_S,
        poll=0.1,
        explain=lambda: _unfinished(app),
    )
    workers.check_alive()
    assert workers.stop() == [0] * N_WORKERS, workers.tail()
    assert len(set(workers.started)) == len(workers.started), "a pid was reused; rerun"
    assert len(workers.killed) == N_KILLS

    # -- no run lost, every run succeeded ----------------------------------------------
    runs = app.runs(names=[crash_app.WORKFLOW], limit=N_RUNS * 2)
    assert {r.id for r in runs} == enqueued
    not_ok = {r.id: (r.state.value, r.error) for r in runs if r.state.value != "SUCCEEDED"}
    assert not not_ok, f"runs not SUCCEEDED: {not_ok}\n{workers.tail()}"

    # -- checkpoints against the executions the steps recorded -------------------------
    recorded: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for execution, run_id, step, pid in log.executions():
        recorded[run_id, step].append((execution, pid))
    writes: dict[tuple[str, str], list[tuple[str, Any, int | None]]] = defaultdict(list)
    for run_id, step, state, result, last_execution in log.checkpoint_writes():
        writes[run_id, step].append((state, result and json.loads(result), last_execution))
    assert {run_id for run_id, _ in recorded} == enqueued
    assert {step for _, step in recorded} == set(crash_app.STEPS)

    reexecuted: list[tuple[str, str]] = []
    resumed: list[str] = []
    for run in runs:
        checkpoints = {s.key: s for s in app.store.steps(run.id)}
        assert sorted(checkpoints) == sorted(crash_app.STEPS), run.id
        previous = 0  # the checkpointed execution of the step before
        for step in crash_app.STEPS:
            where = f"run {run.id} step {step}"
            checkpoint = checkpoints[step]
            assert checkpoint.state == "SUCCEEDED", where
            chosen = checkpoint.result
            # The result the run returned is the checkpointed one, even after a resume.
            assert run.result[step] == chosen, where
            # Checkpointed once only, when its execution was the newest of the step.
            assert writes[run.id, step] == [("SUCCEEDED", chosen, chosen["execution"])], where
            execs = recorded[run.id, step]
            # The checkpointed execution happened, exactly once, in the worker it names.
            assert [pid for e, pid in execs if e == chosen["execution"]] == [chosen["pid"]], where
            # Any other execution was interrupted by a kill (at-least-once, allowed) ...
            others = [(e, pid) for e, pid in execs if e != chosen["execution"]]
            assert all(pid in workers.killed for _, pid in others), (where, execs, chosen)
            # ... and came before it: nothing ran after the step was checkpointed,
            assert max(e for e, _ in execs) == chosen["execution"], (where, execs, chosen)
            # and no execution began before the previous step's checkpointed one.
            assert min(e for e, _ in execs) > previous, (where, execs, previous)
            previous = chosen["execution"]
            if others:
                reexecuted.append((run.id, step))
        if len({checkpoints[s].result["pid"] for s in crash_app.STEPS}) > 1:
            resumed.append(run.id)

    # -- the kills really interrupted work ---------------------------------------------
    reclaimed = [r.id for r in runs if r.attempt > 1 or r.reclaims > 0]
    summary = (
        f"seed={seed} killed={sorted(workers.killed)} reclaimed runs={len(reclaimed)} "
        f"re-executed steps={len(reexecuted)} runs resumed on another worker={len(resumed)}"
    )
    print(summary)
    assert reclaimed, summary
    assert reexecuted, summary  # interrupted steps ran again (at-least-once)
    assert resumed, summary  # completed steps were skipped by the worker that resumed
