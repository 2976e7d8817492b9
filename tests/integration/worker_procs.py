"""Worker subprocesses for the crash and blip tests, each logging to its own file.

One class for the three suites that start, kill and stop real worker processes, so a fix to
how they are stopped (waiting for the "ready" line before a SIGTERM) reaches all of them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

STOP_DEADLINE_S = 45.0  # SIGTERM -> exit; the worker's own shutdown grace is 30 s
WAIT_S = 60.0  # any other single wait for a process


class WorkerProcesses:
    """`python APP_FILE` workers; `live` are running, `killed` the pids SIGKILLed."""

    def __init__(self, app_file: Path, env: dict[str, str], log_dir: Path) -> None:
        self.app_file = app_file
        self.env = {**env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.live: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.started: list[int] = []
        self._logs: list[tuple[Path, IO[bytes]]] = []

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"worker-{len(self.started)}.log"
        log = path.open("wb")
        self._logs.append((path, log))
        proc = subprocess.Popen(
            [sys.executable, str(self.app_file)],
            env={**self.env, **env},
            cwd=self.log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.live.append(proc)
        self.started.append(proc.pid)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
        self.live.remove(proc)
        self.killed.add(proc.pid)

    def check_alive(self) -> None:
        for proc in self.live:
            if proc.poll() is not None:
                pytest.fail(
                    f"worker {proc.pid} exited by itself ({proc.returncode})\n{self.tail()}"
                )

    def stop(self) -> list[int]:
        """SIGTERM every live worker (a graceful stop) and return their exit codes.

        Each is first given time to install its SIGTERM handler (its "ready" log line): a
        replacement started moments ago may still be importing, and would die of the signal
        (-15) instead of stopping."""
        for proc in self.live:
            self._wait_ready(proc)
        for proc in self.live:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=STOP_DEADLINE_S) for proc in self.live]
        self.live.clear()
        return codes

    def cleanup(self) -> None:
        """Stop what still runs (SIGTERM, then SIGKILL after the deadline); close the logs."""
        for proc in self.live:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.live:
            try:
                proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=WAIT_S)
        self.live.clear()
        for _, log in self._logs:
            log.close()

    def text(self) -> str:
        for _, log in self._logs:
            log.flush()
        return "\n".join(path.read_text(errors="replace") for path, _ in self._logs)

    def tail(self, lines: int = 20) -> str:
        out = []
        for path, log in self._logs:
            log.flush()
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        path = self._logs[self.started.index(proc.pid)][0]
        deadline = time.monotonic() + STOP_DEADLINE_S
        while f"worker {proc.pid} ready" not in path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                return  # the caller's exit-code assertion reports it, with the logs
            time.sleep(0.05)
