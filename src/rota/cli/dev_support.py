"""What `rota dev` adds around a worker: a line for each run as it ends, a restart only when
the app's own files change (not any *.py in the folder), and a port kept across restarts."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..durable import WaitParked
from ..model import ModelCall
from ..worker.middleware import Execute, RunCall
from ..worker.observe import SUCCESS_EVENT
from .common import span

APP_FILES_ENV = "ROTA_DEV_APP_FILES"  # where the child lists the files its app imported


class RunLines:
    """Run middleware of `rota dev`: one line per execution as it ends, with the run's name,
    state, duration and model cost, e.g. `greet 01a2… SUCCEEDED 12ms $0.0000`."""

    def __init__(
        self,
        model_calls: Callable[[str], list[ModelCall]],
        clock: Clock,
        say: Callable[[str], None],
    ) -> None:
        self._model_calls = model_calls
        self._clock = clock
        self._say = say

    async def __call__(self, call: RunCall, call_next: Execute) -> Any:
        started = self._clock.now()
        try:
            value = await call_next(call)
        except WaitParked:
            await self._line(call, "WAITING", started)
            raise
        except Exception as exc:
            run = call.run
            state = f"FAILED (attempt {run.attempt} of {run.max_attempts}: {type(exc).__name__})"
            await self._line(call, state, started)
            raise
        await self._line(call, "SUCCEEDED", started)
        return value

    async def _line(self, call: RunCall, state: str, started: float) -> None:
        calls = await call.db(self._model_calls, call.run.id)
        cost = sum(c.cost_pusd for c in calls) / 1e12
        took = span(self._clock.now() - started)
        self._say(f"run {call.run.name} {call.run.id} {state} in {took}, ${cost:.4f}")


@contextmanager
def runs_told_by_run_lines() -> Iterator[None]:
    """While `rota dev` prints its own line for each run (RunLines), the worker's success
    lines would tell each run a second time: leave them out. Failures, retries and parked
    runs keep their log lines, which say more than a RunLines line does."""
    logger = logging.getLogger("rota.run")
    logger.addFilter(_not_a_success_line)
    try:
        yield
    finally:
        logger.removeFilter(_not_a_success_line)


def _not_a_success_line(record: logging.LogRecord) -> bool:
    return getattr(record, "rota_event", None) != SUCCESS_EVENT


def record_app_files(root: str = ".") -> None:
    """In the child: list the files of the modules the app imported from `root` (not the
    interpreter's, not site-packages), for the supervisor to watch."""
    target = os.environ.get(APP_FILES_ENV)
    if not target:
        return
    base = Path(root).resolve()
    files = sorted(
        str(path)
        for module in list(sys.modules.values())
        if (path := _source(module)) is not None
        and path.is_relative_to(base)
        and "site-packages" not in path.parts
    )
    Path(target).write_text(json.dumps(files), encoding="utf-8")


def _source(module: Any) -> Path | None:
    name = getattr(module, "__file__", None)
    return Path(name).resolve() if isinstance(name, str) and name.endswith(".py") else None


class OwnFiles:
    """In the supervisor: which changed files count. A Python file counts when the app
    imported it (all do until the app has imported once, e.g. after a syntax error); other
    files (routine files) count as the watch filter let them through."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="rota-dev-", suffix=".json")
        os.close(handle)
        os.unlink(name)  # absent until the child writes it
        self.listing = Path(name)

    def env(self) -> dict[str, str]:
        """The child's environment: where to write its list."""
        return {**os.environ, APP_FILES_ENV: str(self.listing)}

    def relevant(self, changes: Iterable[tuple[Any, str]]) -> set[tuple[Any, str]]:
        """The changes that should restart the app."""
        try:
            imported = set(json.loads(self.listing.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return set(changes)  # the app never imported: any Python change may fix it
        return {
            (kind, path)
            for kind, path in changes
            if not path.endswith(".py") or str(Path(path).resolve()) in imported
        }

    def close(self) -> None:
        """Remove the list file."""
        self.listing.unlink(missing_ok=True)


def free_port(host: str) -> int:
    """A port free now on `host`, chosen once so that every restart serves on it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
