"""A real `rota` CLI run as a subprocess in a directory holding a test's app.py, and the
usual way to drive a real `rota worker` through it: migrate, store a secret, queue jobs, run
the worker until a job sends it SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROTA = Path(sys.executable).parent / "rota"


class RotaCli:
    """`rota ARGS...` run in `cwd` with `env`; returns the finished process."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def __call__(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROTA), *argv],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )


def rota_cli(
    tmp_path: Path, app_source: str, database_url: str, secret_key: str, **env_extra: str
) -> RotaCli:
    """Write app.py into `tmp_path` and return the CLI that runs there."""
    (tmp_path / "app.py").write_text(textwrap.dedent(app_source))
    env = {
        **os.environ,
        "ROTA_DATABASE_URL": database_url,
        "ROTA_SECRET_KEY": secret_key,
        **env_extra,
    }
    # the user's own warning filters would change what the worker prints
    env.pop("PYTHONWARNINGS", None)
    return RotaCli(tmp_path, env)


def run_worker_after_jobs(
    cli: RotaCli, secret_value: str, jobs: tuple[str, ...], *worker_args: str
) -> subprocess.CompletedProcess[str]:
    """Migrate, store `secret_value` as stripe_key for svc-billing, queue `jobs` (the last
    one stops the worker with SIGTERM) and run one worker until it exits."""
    assert cli("db", "migrate").returncode == 0
    saved = cli("secrets", "set", "stripe_key", "--grant", "svc-billing", stdin=secret_value)
    assert saved.returncode == 0, saved.stderr
    for job in jobs:
        assert cli("run", job).returncode == 0
    worker = cli("worker", "--concurrency", "1", "--grace", "5", *worker_args)
    assert worker.returncode in (0, 128 + signal.SIGTERM), worker.stderr
    return worker
