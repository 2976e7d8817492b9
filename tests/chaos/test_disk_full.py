"""SQLite on a full disk: a `rota worker` whose database file cannot grow says so in one
clear line, keeps running, corrupts nothing (`PRAGMA integrity_check`), and once there is
room again (a worker without the limit) every run completes, no completed step runs again
and no side effect is duplicated.

The disk is a small tmpfs, filled up with a file and given room again by deleting it, when
the test may mount one (root). Elsewhere it is a file-size limit on the worker process
(RLIMIT_FSIZE, what `ulimit -f` sets, with SIGXFSZ ignored so that a write past it fails
with EFBIG, which SQLite reports as a disk I/O error), lifted by starting another worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import chaos_app
import invariants
import pytest
from invariants import Db, Expected
from processes import RotaProcess, rota_env

from harness import SECRET_KEY

pytestmark = pytest.mark.slow

RUNS = 60
ROOM_BYTES = 48 * 1024  # the database may grow this much once the disk is "full"
TMPFS_BYTES = 32 * 1024 * 1024  # room for a full WAL (1000 pages) once the filler is gone
WAIT_S = 180.0
# What SQLite says: ENOSPC on a full file system, EFBIG (the file-size limit) as an I/O error.
FULL = ("database or disk is full", "disk I/O error")


class FullDisk:
    """A disk that fills up and gets room again: a small tmpfs when this process may mount
    one (filled with a file, which is deleted to make room), else a file-size limit on the
    worker (lifted by starting a worker without it)."""

    def __init__(self, tmp_path: Path) -> None:
        self.mount = tmp_path / "disk"
        self.mount.mkdir()
        self.tmpfs = _try_mount(self.mount)
        self.filler = self.mount / "filler"
        self.limit = 0

    def fill(self, db: Path) -> None:
        """Leave the database ROOM_BYTES to grow."""
        if self.tmpfs:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):  # until ENOSPC
                    while os.write(fd, b"\0" * 4096):
                        pass
            finally:
                os.close(fd)
            os.truncate(self.filler, max(0, self.filler.stat().st_size - ROOM_BYTES))
        else:
            self.limit = db.stat().st_size + ROOM_BYTES

    def preexec(self) -> Callable[[], None] | None:
        return None if self.tmpfs else lambda: _no_room(self.limit)

    def make_room(self) -> None:
        if self.tmpfs:
            self.filler.unlink()

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", str(self.mount)], check=False, capture_output=True)


def _try_mount(path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)],
        check=False,
        capture_output=True,
    )
    return done.returncode == 0


def _no_room(limit: int) -> None:
    """In the worker's child process: files stop growing at `limit` bytes."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _wait(what: str, done: Callable[[], bool], worker: RotaProcess) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert worker.alive, f"the worker exited:\n{worker.text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not in {WAIT_S:g}s\n{worker.text()[-3000:]}"
        time.sleep(0.2)


def _said_full(worker: RotaProcess) -> list[str]:
    records = [json.loads(line) for line in worker.text().splitlines() if line.startswith("{")]
    return [r["message"] for r in records if any(f in r["message"] for f in FULL)]


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(tmp_path: Path) -> None:
    disk = FullDisk(tmp_path)
    path = disk.mount / "rota.db"
    url = f"sqlite:///{path}"
    side_url = str(tmp_path / "side.db")
    rota = Db(str(path))
    env = rota_env(
        url,
        {
            chaos_app.SIDE_URL_ENV: side_url,
            chaos_app.STEP_S_ENV: "0.01,0.05",
            "ANTHROPIC_API_KEY": "unused",
            "ROTA_SECRET_KEY": SECRET_KEY,
        },
    )
    args = ["worker", "--concurrency", "4", "--lease", "5", "--poll", "0.2", "--grace", "1"]
    full = RotaProcess("worker-full", args, env, tmp_path / "worker-full.log", "rota worker ")
    roomy = RotaProcess("worker", args, env, tmp_path / "worker.log", "rota worker ")
    try:
        expected = _enqueue(url, side_url, rota)
        disk.fill(path)
        full.start(preexec=disk.preexec())
        _wait("the disk full", lambda: bool(_said_full(full)), full)
        time.sleep(2.0)  # it keeps trying, and keeps running
        assert full.alive, full.text()
        assert rota.query("PRAGMA integrity_check") == [("ok",)]
        said = _said_full(full)
        assert all(m.startswith("worker: database unavailable") for m in said), said
        # One line an outage, not one a try (a write that still fits ends an outage early).
        back = full.text().count("worker: database works again")
        assert len(said) <= back + 1, full.text()
        assert "Traceback" not in full.text()

        disk.make_room()
        # On the tmpfs the same worker resumes on its own; past a file-size limit, which
        # stays with the process, a worker started without it finishes the work.
        worker = full if disk.tmpfs else roomy
        if worker is roomy:
            full.stop()
            roomy.start()
        left = "SELECT count(*) FROM rota_runs WHERE state <> 'SUCCEEDED'"
        _wait("every run done", lambda: rota.query(left) == [(0,)], worker)
        worker.stop()

        assert rota.query("PRAGMA integrity_check") == [("ok",)]
        logs = {"worker-full": full.text(), "worker": roomy.text()}
        found = invariants.check_all(rota, Db(side_url), expected, logs)
        checked = ("runs lost", "runs stuck or failed", "completed steps re-run")
        checked += ("checkpoints written under a lost lease", "duplicated side effects")
        assert not any(found.violations.get(name) for name in checked), found.summary()
    finally:
        full.close()
        roomy.close()
        rota.close()
        disk.close()


def _enqueue(url: str, side_url: str, rota: Db) -> Expected:
    with mock.patch.dict("os.environ", {"ANTHROPIC_API_KEY": "unused"}):
        app = chaos_app.make_app(url)
    app.store.schema_version()  # migrated
    side = chaos_app.SideSystem(side_url)
    side.install()
    side.close()
    invariants.install_checkpoint_log(rota)
    expected = Expected()
    for n in range(RUNS):
        key = f"flow-{n}"
        app.run_now("chaos_flow", n, idempotency_key=key)
        expected.runs[("chaos_flow", key)] = f"submitted chaos_flow #{n}"
    app.close()
    rota.query("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL starts empty: it must grow
    return expected
