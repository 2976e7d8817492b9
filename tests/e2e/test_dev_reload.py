"""`rota dev` restarts the app when a Python file changes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROTA = Path(sys.executable).with_name("rota")
APP = """
from rota import App

app = App()

@app.job
def first(ctx):
    return 1
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


@pytest.mark.slow
def test_dev_restarts_with_the_new_code_when_a_file_changes(tmp_path: Path) -> None:
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
        assert "serving first (" in _wait_for(lines, "(concurrency")
        (tmp_path / "app.py").write_text(APP + "\n@app.job\ndef second(ctx):\n    return 2\n")
        _wait_for(lines, "reloading: app.py changed")
        assert "serving first, second (" in _wait_for(lines, "(concurrency")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        reader.join(timeout=10)  # it ends at EOF once the process has exited
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0
