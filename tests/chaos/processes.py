"""The rota processes of a chaos run: `rota worker`, `rota scheduler` and `rota serve`
subprocesses serving chaos_app.py, each killed and restarted at will, each appending its JSON
log to a file of its own across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROTA = Path(sys.executable).with_name("rota")
APP = "chaos_app:app"
STOP_TIMEOUT_S = 30.0


class RotaProcess:
    """One long-running `rota` command that the suite kills and restarts."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        banner: str,
        *,
        app: str = APP,
        cwd: Path = HERE,
    ) -> None:
        self.name = name
        self.app = app  # module:attribute, imported from cwd (the soak bench serves its own)
        self.cwd = cwd
        self.banner = banner  # what its output says once it is up
        self.args = args
        self.env = env
        self.log_path = log_path
        self.kills = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0
        self._log: IO[bytes] = log_path.open("ab")

    def start(self, preexec: Callable[[], None] | None = None) -> None:
        """Start it; `preexec` runs in the child before rota (e.g. to set a resource limit)."""
        self._started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(
            [str(ROTA), "--app", self.app, *self.args, "--log-format", "json"],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )

    @property
    def ready(self) -> bool:
        """Up since its last start: its banner is in the output written since then."""
        self._log.flush()
        with self.log_path.open("rb") as log:
            log.seek(self._started_at)
            return self.banner.encode() in log.read()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no release of its runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()

    def text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


def rota_env(database_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "ROTA_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(env: dict[str, str], *argv: str, stdin: str | None = None) -> str:
    """A one-off `rota` command; returns its output, raising with it when it fails."""
    done = subprocess.run(
        [str(ROTA), "--app", APP, *argv],
        cwd=HERE,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"rota {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout
