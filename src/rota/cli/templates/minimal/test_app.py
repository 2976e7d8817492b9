"""The app's own tests: offline, on a throwaway SQLite database, with rota's test kit."""

from __future__ import annotations

from pathlib import Path

from app import app

from rota.testing import ScriptedModel, get_scripted


def test_greet_is_deterministic(tmp_path: Path) -> None:
    app.use_database(f"sqlite:///{tmp_path / 'test.db'}")
    run = app.run_now("greet", {"name": "Ada"})
    app.drain()
    assert run.result() == {"greeting": "hello, Ada"}


def test_the_agent_answers_with_its_scripted_model(tmp_path: Path) -> None:
    app.use_database(f"sqlite:///{tmp_path / 'test.db'}")
    run = app.run_now("greeter", "Greet Ada")
    app.drain()
    assert run.result() == "Hello! Glad you are here."
    model = get_scripted("greeter")
    assert isinstance(model, ScriptedModel)
    assert "Greet Ada" in str(model.requests[-1].messages)  # the task reached the model
