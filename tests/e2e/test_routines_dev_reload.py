"""`rota dev` reloads a routine file edited while it runs, says what changed, and the edited
schedule fires no surprise run (the scheduler starts a redefined schedule from now)."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROTA = Path(sys.executable).with_name("rota")
APP = """
from rota import App
from rota.testing import register_scripted, say

register_scripted("echo", script=[say("done")])
app = App()
app.principal("alice", kind="user")
loaded = app.load_routines()
"""
ROUTINE = """---
name: digest
owner: alice
model: scripted:echo
triggers:
  - cron: "{cron}"
---
Write the digest.
"""


def _lines(stream, sink: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)


def _wait_for(lines: queue.Queue[str], text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r} within {timeout}s")


def _runs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM rota_runs WHERE name = 'digest'").fetchone()[0]
        )


@pytest.mark.slow
def test_dev_reloads_an_edited_routine_and_says_what_changed(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "routines").mkdir()
    routine = tmp_path / "routines" / "digest.md"
    routine.write_text(ROUTINE.format(cron="0 0 1 1 *"))  # once a year: no run in this test
    db = tmp_path / "dev.db"
    env = {**os.environ, "ROTA_DATABASE_URL": f"sqlite:///{db}", "PYTHONUNBUFFERED": "1"}
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
        assert "digest" in _wait_for(lines, "(concurrency")
        routine.write_text(ROUTINE.format(cron="0 0 1 7 *"))  # July: still none now
        _wait_for(lines, "reloading: routines/digest.md changed")
        changed = _wait_for(lines, "routine digest: triggers changed")
        assert "cron 0 0 1 1 * (UTC) -> cron 0 0 1 7 * (UTC)" in changed
        _wait_for(lines, "(concurrency")
        (tmp_path / "routines" / "extra.md").write_text(
            ROUTINE.format(cron="0 0 1 1 *").replace("name: digest", "name: extra")
        )
        _wait_for(lines, "routine added: extra")
        _wait_for(lines, "(concurrency")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
    assert _runs(db) == 0  # neither definition's ticks were due: nothing fired by the edit
