"""`rota dev` reloads a routine file edited while it runs, says what changed, and the edited
schedule fires no surprise run (the scheduler starts a redefined schedule from now)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from dev_process import dev_env, running_dev

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
    env = dev_env(f"sqlite:///{db}")
    with running_dev(tmp_path, env) as dev:
        assert "digest" in dev.wait_for("(concurrency")[0]
        routine.write_text(ROUTINE.format(cron="0 0 1 7 *"))  # July: still none now
        dev.wait_for("reloading: routines/digest.md changed")
        changed, _ = dev.wait_for("routine digest: triggers changed")
        assert "cron 0 0 1 1 * (UTC) -> cron 0 0 1 7 * (UTC)" in changed
        dev.wait_for("(concurrency")
        (tmp_path / "routines" / "extra.md").write_text(
            ROUTINE.format(cron="0 0 1 1 *").replace("name: digest", "name: extra")
        )
        dev.wait_for("routine added: extra")
        dev.wait_for("(concurrency")
    assert dev.code == 0
    assert _runs(db) == 0  # neither definition's ticks were due: nothing fired by the edit
