"""`rota dev` restarts the app when a Python file changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from dev_process import dev_env, running_dev

APP = """
from rota import App

app = App()

@app.job
def first(ctx):
    return 1
"""


@pytest.mark.slow
def test_dev_restarts_with_the_new_code_when_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = dev_env(f"sqlite:///{tmp_path / 'dev.db'}")
    with running_dev(tmp_path, env) as dev:
        assert "serving first (" in dev.wait_for("(concurrency")[0]
        (tmp_path / "app.py").write_text(APP + "\n@app.job\ndef second(ctx):\n    return 2\n")
        dev.wait_for("reloading: app.py changed")
        assert "serving first, second (" in dev.wait_for("(concurrency")[0]
    assert dev.code == 0
