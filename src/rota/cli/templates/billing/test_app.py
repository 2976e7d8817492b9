"""The app's own tests: offline, on a throwaway SQLite database, with rota's test kit."""

from __future__ import annotations

from pathlib import Path

from app import app

from rota.testing import ScriptedModel, get_scripted


def test_the_job_bills_a_known_event(tmp_path: Path) -> None:
    app.use_database(f"sqlite:///{tmp_path / 'test.db'}")
    event = {"type": "plan_changed", "customer": "acme", "plan": "pro", "seats": 2}
    run = app.run_now("bill", event)
    app.drain()
    assert run.result() == {"customer": "acme", "amount_cents": 10_000, "action": "charge"}


def test_an_unknown_event_goes_to_the_agent(tmp_path: Path) -> None:
    app.use_database(f"sqlite:///{tmp_path / 'test.db'}")
    run = app.run_now("bill", {"type": "seat_added", "customer": "acme"})
    app.drain()
    assert run.get().state == "SUCCEEDED"
    agent_runs = [r for r in app.runs() if r.name == "billing-reviewer"]
    assert [r.state for r in agent_runs] == ["SUCCEEDED"]
    assert agent_runs[0].result == {"customer": "acme", "amount_cents": 5_000, "action": "charge"}
    model = get_scripted("billing-reviewer")
    assert isinstance(model, ScriptedModel) and model.calls == 3  # two tools, one answer
