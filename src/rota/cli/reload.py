"""`rota dev` reloads the app when its Python files or routine files (`routines/*.md`)
change, as uvicorn does: this process watches the current directory and runs the real `rota
dev` in a child process, which it stops gracefully (SIGTERM: runs in progress are finished or
handed back) and starts again on every change, saying which routines changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from watchfiles import Change, DefaultFilter, PythonFilter, watch

from ..routines.changes import changes as routine_changes
from ..routines.changes import look
from .common import err
from .dev_support import OwnFiles

RESTART_GRACE_S = 10.0  # how long a reloading child may take to stop before it is killed
# How often, with no file change, we look whether the child stopped by itself (then so do
# we): a child stopped by a signal or by its own code is noticed within this many ms.
IDLE_CHECK_MS = 100


def supervise(args: Sequence[str], path: str = ".") -> int:
    """Run `rota <args>` (which must include --no-reload) and restart it when *.py changes."""
    stop = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    command = [sys.executable, "-c", "from rota.cli import main; main()", *args]
    own = OwnFiles()  # restart on the app's own modules only, not any *.py in the folder
    child.append(subprocess.Popen(command, env=own.env()))
    told, routines = False, look(path)
    for changes in watch(
        path,
        watch_filter=AppFiles(),
        stop_event=stop,
        rust_timeout=IDLE_CHECK_MS,
        yield_on_timeout=True,
    ):
        ended = child[0].poll()
        if not changes:
            if ended == 0:
                break  # it stopped cleanly by itself: so do we
            if ended is not None and not told:  # e.g. a syntax error: wait for the fix
                err.print("rota dev: the app stopped with an error; waiting for a change")
                told = True
            continue
        changes = own.relevant(changes)
        if not changes:
            continue
        names = ", ".join(sorted({os.path.relpath(p) for _, p in changes}))
        err.print(f"reloading: {names} changed")
        routines, before = look(path), routines
        for line in routine_changes(before, routines):
            err.print(line)
        if ended is None:
            _stop(child[0])
        child[0], told = subprocess.Popen(command, env=own.env()), False
    # On a signal the child already has it (a second one would make it stop at once).
    try:
        return child[0].wait()
    finally:
        own.close()


class AppFiles(PythonFilter):
    """Python files, and routine files: `*.md` in a directory named `routines`."""

    def __call__(self, change: Change, path: str) -> bool:
        if path.endswith(".md") and Path(path).parent.name == "routines":
            return DefaultFilter.__call__(self, change, path)
        return super().__call__(change, path)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=RESTART_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
