"""`rota dev` prints each run as it ends, restarts only when the app's own files change, and
keeps its port across restarts (issue 16)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from dev_process import ROTA, dev_env, running_dev

from rota.cli.dev_support import OwnFiles

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


@pytest.mark.slow
def test_dev_prints_runs_ignores_other_files_and_keeps_its_port(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("ANSWER = 42\n")
    (tmp_path / "app.py").write_text(APP)
    env = dev_env(f"sqlite:///{tmp_path / 'dev.db'}")
    with running_dev(tmp_path, env) as dev:
        api, _ = dev.wait_for("rota API on http://")
        port = re.search(r":(\d+)", api.split("http://")[1])
        assert port is not None and port.group(1) != "0"
        dev.wait_for("(concurrency")

        (tmp_path / "notes.py").write_text("print('not part of the app')\n")  # unrelated
        for name in ("first", "broken"):
            enqueued = subprocess.run(
                [ROTA, "run", name], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert enqueued.returncode == 0, enqueued.stderr
        done, before = dev.wait_for("run first ")
        assert re.search(r"run first \S+ SUCCEEDED in \S+, \$0\.0000", done), done
        failed, more = dev.wait_for("run broken ")
        assert "FAILED (attempt 1 of 1: ValueError)" in failed, failed

        (tmp_path / "helpers.py").write_text("ANSWER = 43\n")  # imported by the app: counts
        reloading, between = dev.wait_for("reloading:")
        assert reloading.strip() == "reloading: helpers.py changed"
        assert not any("reloading" in line for line in before + more + between)
        # each run is told once: the worker's own success line is left to `rota worker`
        first_id = done.split("run first ")[1].split()[0]
        assert not any(f"{first_id} of first" in line for line in before + more + between)
        again, _ = dev.wait_for("rota API on http://")
        assert again == api  # the same address after the restart
        dev.wait_for("(concurrency")  # up again: it handles SIGTERM gracefully from here
    assert dev.code == 0


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
