"""Each long-running process kind keeps running while its PostgreSQL server is stopped under
it: `rota worker`, `rota scheduler` and `rota serve`, each on a private cluster (see
private_pg.py) with the app of outage_app.py. Each logs one line when the database goes and
one when it is back (counted in its JSON log, with no traceback), and resumes on its own:
the worker records the outcome of a run it held through the outage and runs one enqueued
after it, the scheduler fires the next ticks (each fire time decided exactly once), and the
server answers 503 database_unavailable meanwhile and 200 after.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import outage_app
import pytest
from private_pg import PrivateCluster, private_cluster

from rota import App, RunState
from rota.errors import StoreUnavailable

HERE = Path(__file__).resolve().parent
ROTA = Path(sys.executable).with_name("rota")
APP = "outage_app:app"
DOWN_S = 4.0  # how long the database stays stopped: several back-off rounds of each process
WAIT_S = 60.0
GONE = "database unavailable"
BACK = "database works again"

T = TypeVar("T")

pytestmark = pytest.mark.postgres


class Process:
    """One `rota` command in a subprocess, its JSON log lines in a file of the test's."""

    def __init__(self, args: list[str], url: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        env = {**os.environ, "ROTA_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [str(ROTA), "--app", APP, *args, "--log-format", "json"],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"the process exited ({self.proc.returncode}):\n{self.text()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT_S)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The process's JSON log records (its other output is plain text)."""
        lines = (line.strip() for line in self.text().splitlines())
        return [json.loads(line) for line in lines if line.startswith("{")]

    def check_outage_logged_once(self) -> None:
        """One line when the database went, one when it came back; no error or traceback."""
        records = self.log_lines()
        gone = [r["message"] for r in records if GONE in r["message"]]
        back = [r["message"] for r in records if BACK in r["message"]]
        assert len(gone) == 1, (gone, self.text())
        assert len(back) == 1, (back, self.text())
        assert [r["level"] for r in records if GONE in r["message"]] == ["WARNING"]
        assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "exc" in r], (
            self.text()
        )
        assert "Traceback" not in self.text()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


@pytest.fixture
def app(cluster: PrivateCluster) -> Iterator[App]:
    """The test's own view of the database (it reconnects after the outage too)."""
    opened = outage_app.make_app(cluster.url)
    opened.store.schema_version()  # opened and migrated before any process starts
    yield opened
    opened.close()


def _eventually(what: str, probe: Callable[[], T | None], process: Process) -> T:
    """`probe()`'s first answer that is not None, asked until WAIT_S; the database being
    unavailable to the test itself (just after the restart) counts as not yet."""
    deadline = time.monotonic() + WAIT_S
    while True:
        process.check_alive()
        try:
            answer = probe()
        except StoreUnavailable:
            answer = None
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT_S:g}s\n{process.text()[-3000:]}")
        time.sleep(0.1)


def _outage(cluster: PrivateCluster) -> None:
    """Stop the server at once (as a crash would), keep it down, start it again."""
    cluster.stop_immediate()
    time.sleep(DOWN_S)
    cluster.start()


# -- rota worker -------------------------------------------------------------------------------


def test_a_worker_keeps_the_run_it_held_through_an_outage_and_runs_new_ones_after(
    cluster: PrivateCluster, app: App, tmp_path: Path
) -> None:
    worker = Process(["worker", "--poll", "0.2"], cluster.url, tmp_path / "worker.log")
    try:
        before = app.run_now("echo", 1)
        _eventually("a run before the outage", lambda: before.get().result, worker)
        held = app.run_now("slow", DOWN_S / 2)  # ends while the database is down
        _eventually(
            "the slow run started",
            lambda: True if held.get().state == RunState.RUNNING else None,
            worker,
        )

        _outage(cluster)

        # (the test's own first call after the restart may meet its dropped connection)
        after = _eventually("enqueued after", lambda: app.run_now("echo", 2), worker)
        assert _eventually("a run enqueued after the outage", lambda: after.get().result, worker)
        _eventually("the held run recorded", lambda: held.get().finished_at, worker)
        worker.check_alive()
        assert worker.stop() == 0, worker.text()
        run = held.get()
        # The database's absence was not the job's failure: no retry spent, no error kept.
        assert (run.state, run.failures, run.result) == (RunState.SUCCEEDED, 0, DOWN_S / 2)
        assert (before.result(), after.result()) == (1, 2)
        worker.check_outage_logged_once()
    finally:
        worker.cleanup()


# -- rota scheduler ----------------------------------------------------------------------------


def _ticks(app: App) -> list[Any]:
    return [t for t in app.store.ticks(limit=10_000) if t.schedule == "tick"]


def test_a_scheduler_fires_the_next_ticks_after_an_outage_each_exactly_once(
    cluster: PrivateCluster, app: App, tmp_path: Path
) -> None:
    scheduler = Process(
        ["scheduler", "--max-sleep", "0.2"], cluster.url, tmp_path / "scheduler.log"
    )
    try:
        _eventually(
            "ticks before the outage", lambda: True if len(_ticks(app)) >= 2 else None, scheduler
        )

        _outage(cluster)
        back = time.time()

        _eventually(
            "a tick fired after the outage",
            lambda: True if any(t.fire_at > back + 1 for t in _ticks(app)) else None,
            scheduler,
        )
        scheduler.check_alive()
        assert scheduler.stop() == 0, scheduler.text()
        ticks = sorted(_ticks(app), key=lambda t: t.fire_at)
        # Every second from the first tick to the last was decided once: none fired twice,
        # none silently skipped (ticks missed during the outage are recorded as decided by
        # the schedule's misfire policy, in ranges).
        covered = [t.fire_at + i for t in ticks for i in range(t.ticks)]
        assert covered == [ticks[0].fire_at + i for i in range(len(covered))], [
            (t.fire_at, t.ticks, t.outcome) for t in ticks
        ]
        assert all(t.last_fire_at == t.fire_at + t.ticks - 1 for t in ticks)
        scheduler.check_outage_logged_once()
    finally:
        scheduler.cleanup()


# -- rota serve --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:  # not listening yet
        return 0, {}


def test_a_server_answers_503_while_the_database_is_away_and_200_after(
    cluster: PrivateCluster, app: App, tmp_path: Path
) -> None:
    port = _free_port()
    server = Process(["serve", "--port", str(port)], cluster.url, tmp_path / "serve.log")
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        _eventually("the server up", lambda: True if _get(health)[0] == 200 else None, server)

        cluster.stop_immediate()
        during = [_get(health) for _ in range(5)]
        cluster.start()

        assert [status for status, _ in during] == [503] * 5, during
        assert {body["error"] for _, body in during} == {"database_unavailable"}
        _eventually(
            "200 after the outage", lambda: True if _get(health)[0] == 200 else None, server
        )
        server.check_alive()
        assert server.stop() == 0, server.text()
        server.check_outage_logged_once()
    finally:
        server.cleanup()
