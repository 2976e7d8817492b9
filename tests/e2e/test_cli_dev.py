"""`rota dev` prints each run as it ends, restarts only when the app's own files change, and
keeps its port across restarts (issue 16)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rota.cli.dev_support import OwnFiles

ROTA = Path(sys.executable).with_name("rota")
APP = """
from rota import App

import helpers

app = App()

@app.job
def first(ctx):
    return helpers.ANSWER

@app.job
def broken(ctx):
    raise ValueError("no ledger")
"""


def _lines(stream, sink: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in iter(stream.readline, ""):
        sink.put(line)


def _wait_for(lines: queue.Queue[str], text: str) -> tuple[str, list[str]]:
    """The first line containing `text`, and every line seen before it."""
    seen: list[str] = []
    while True:
        line = lines.get(timeout=120)  # a hang fails the test instead of blocking the suite
        if text in line:
            return line, seen
        seen.append(line)


@pytest.mark.slow
def test_dev_prints_runs_ignores_other_files_and_keeps_its_port(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("ANSWER = 42\n")
    (tmp_path / "app.py").write_text(APP)
    env = {
        **os.environ,
        "ROTA_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ROTA_APP", None)
    proc = subprocess.Popen(
        [str(ROTA), "dev", "--port", "0", "--grace", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        api, _ = _wait_for(lines, "rota API on http://")
        port = re.search(r":(\d+)", api.split("http://")[1])
        assert port is not None and port.group(1) != "0"
        _wait_for(lines, "(concurrency")

        (tmp_path / "notes.py").write_text("print('not part of the app')\n")  # unrelated
        for name in ("first", "broken"):
            enqueued = subprocess.run(
                [ROTA, "run", name], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert enqueued.returncode == 0, enqueued.stderr
        done, before = _wait_for(lines, "run first ")
        assert re.search(r"run first \S+ SUCCEEDED in \S+, \$0\.0000", done), done
        failed, more = _wait_for(lines, "run broken ")
        assert "FAILED (attempt 1 of 1: ValueError)" in failed, failed

        (tmp_path / "helpers.py").write_text("ANSWER = 43\n")  # imported by the app: counts
        reloading, between = _wait_for(lines, "reloading:")
        assert reloading.strip() == "reloading: helpers.py changed"
        assert not any("reloading" in line for line in before + more + between)
        again, _ = _wait_for(lines, "rota API on http://")
        assert again == api  # the same address after the restart
        _wait_for(lines, "(concurrency")  # up again: it handles SIGTERM gracefully from here
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0


def test_only_the_apps_own_python_files_count(tmp_path: Path) -> None:
    own = OwnFiles()
    mine, other = str(tmp_path / "app.py"), str(tmp_path / "notes.py")
    routine = str(tmp_path / "routines" / "digest.md")
    changes = {(1, mine), (1, other), (1, routine)}
    assert own.relevant(changes) == changes  # the app has not imported yet: all count
    own.listing.write_text(f'["{mine}"]')
    assert own.relevant(changes) == {(1, mine), (1, routine)}
    own.close()
    assert not own.listing.exists()
