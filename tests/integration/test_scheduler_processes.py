"""Three real `rota scheduler` processes against one database: every tick becomes exactly
one run, with no leader and nothing skipped."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from rota.model import RunFilter
from rota.storage import SqlStore

HERE = Path(__file__).parent
ROTA = Path(sys.executable).with_name("rota")


@pytest.mark.slow
def test_three_scheduler_processes_make_exactly_one_run_per_tick(database_url: str) -> None:
    store = SqlStore(database_url)
    store.migrate()
    env = {**os.environ, "ROTA_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [str(ROTA), "--app", "sched_app:app", "scheduler", "--max-sleep", "0.2"],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 60
        while _fewest_runs(store) < 6:  # every schedule has fired a few times
            assert time.monotonic() < deadline, "schedulers produced too few runs in 60 s"
            assert all(p.poll() is None for p in procs), _output(procs)
            time.sleep(0.2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs

    fires: dict[str, list[float]] = defaultdict(list)
    for name, fire in _scheduled(store):
        fires[name].append(fire)
    assert len(fires) == 20
    for schedule, times in fires.items():
        times.sort()
        assert len(times) == len(set(times)), f"{schedule} has a tick with two runs"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap == 1.0 for gap in gaps), f"{schedule} skipped a tick: {times}"
    ticks = store.ticks(limit=100_000)
    assert {t.outcome for t in ticks} == {"enqueued"}
    assert len(ticks) == sum(len(v) for v in fires.values())
    store.close()


def _fewest_runs(store: SqlStore) -> int:
    counts: dict[str, int] = defaultdict(int)
    for name, _ in _scheduled(store):
        counts[name] += 1
    return min(counts.values()) if len(counts) == 20 else 0


def _scheduled(store: SqlStore) -> list[tuple[str, float]]:
    runs = store.list_runs(RunFilter(limit=100_000))
    return [(r.name, r.run_after) for r in runs if r.trigger == "schedule"]


def _output(procs: list[subprocess.Popen[str]]) -> str:
    return "; ".join(f"exit {p.returncode}" for p in procs if p.poll() is not None)
