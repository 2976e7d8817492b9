"""A real `rota dev` run as a subprocess in a directory holding a test's app, with its output
read line by line on a thread so a test can wait for what it expects to be printed."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROTA = Path(sys.executable).with_name("rota")


def dev_env(database_url: str) -> dict[str, str]:
    """The environment `rota dev` runs in: this database, unbuffered output, no ROTA_APP."""
    env = {**os.environ, "ROTA_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    env.pop("ROTA_APP", None)
    return env


def _pump(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)


class DevProcess:
    """A running `rota dev --port 0 --grace 2`; `code` holds its exit code once it stopped."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(ROTA), "dev", "--port", "0", "--grace", "2"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        self.reader = threading.Thread(
            target=_pump, args=(self.proc.stdout, self.lines), daemon=True
        )
        self.reader.start()
        self.code: int | None = None

    def wait_for(self, text: str, timeout: float = 120) -> tuple[str, list[str]]:
        """The first line containing `text`, and every line seen before it.

        A hang fails the test (AssertionError) instead of blocking the suite."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if text in line:
                return line, seen
            seen.append(line)
        raise AssertionError(f"no line with {text!r} within {timeout}s; saw {seen!r}")

    def stop(self) -> int:
        """SIGTERM, wait for the exit, close the output; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        self.code = self.proc.wait(timeout=60)
        self.reader.join(timeout=10)  # it ends at EOF once the process has exited
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.code


@contextmanager
def running_dev(cwd: Path, env: dict[str, str]) -> Iterator[DevProcess]:
    """`rota dev` in `cwd`, stopped with SIGTERM when the block ends (even on failure)."""
    dev = DevProcess(cwd, env)
    try:
        yield dev
    finally:
        dev.stop()
