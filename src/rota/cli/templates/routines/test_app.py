"""The app's own tests: offline, on a throwaway SQLite database, with rota's test kit."""

from __future__ import annotations

from pathlib import Path

from app import app

from rota.testing import ScriptedModel, get_scripted


def test_the_routine_files_load_and_the_digest_runs(tmp_path: Path) -> None:
    app.use_database(f"sqlite:///{tmp_path / 'test.db'}")
    loaded = app.load_routines()
    assert [str(p) for p in loaded.problems] == []
    assert [r.name for r in loaded.routines] == ["weekly-digest"]
    run = app.run_now("weekly-digest")
    app.drain()
    assert run.get().state == "SUCCEEDED"
    model = get_scripted("digest")
    assert isinstance(model, ScriptedModel) and model.calls == 2  # one tool call, one answer
