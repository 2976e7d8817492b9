"""A routine's `shadow:` on both databases: beside a Python job on a sample (the routine
decides each sampled item in shadow mode, never acts, and its answer is compared with the
job's), or staged (its tools with side effects are recorded, not executed); and the
file:line:column problems of a bad `shadow:`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from routine_kit import SENT, START, read_mail, send_mail

from rota import App
from rota.clock import FakeClock
from rota.model import RunState
from rota.storage.audit import TOOL_CALLED, TOOL_STAGED
from rota.testing import answer, call, say, scripted


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    SENT.clear()
    a = App(database_url, clock=FakeClock(START))
    a.principal("svc-bot", kind="service", scopes=["mail:read", "mail:send"])
    a.routines.tool(send_mail, read_mail)

    @a.job
    def route_ticket(ctx: Any, ticket: dict[str, str]) -> dict[str, str]:
        return {"team": "payments" if "card" in ticket["subject"] else "support"}

    yield a
    a.close()


def write(folder: Path, extra: str) -> None:
    (folder / "triage.md").write_text(
        "---\nname: triage\nrun_as: svc-bot\nmodel: scripted:triage\n"
        f"tools: [read_mail, send_mail]\n{extra}---\nRoute the ticket to a team.\n"
    )


def test_shadow_beside_a_job_decides_sampled_items_without_acting(app: App, tmp_path: Path) -> None:
    output = "output: {type: object, properties: {team: {type: string}}, required: [team]}\n"
    write(tmp_path, f"shadow: {{job: route_ticket, sample: 1}}\n{output}")
    script = [call("send_mail", to="payments@"), answer({"team": "payments"})]
    with scripted("triage", script=script) as model:
        assert app.load_routines(tmp_path).problems == []
        handle = app.run_now("route_ticket", {"subject": "card declined"})
        app.drain()
    assert handle.result() == {"team": "payments"}  # the job did the work
    [shadow_run] = app.runs(names=["triage"])
    assert (shadow_run.state, shadow_run.trigger) == (RunState.SUCCEEDED, "shadow")
    assert SENT == []  # in shadow mode a tool with side effects has no effect
    asked = model.requests[0].messages[0].text
    assert asked.startswith("Route the ticket to a team.\n\nInput:\n")
    assert json.loads(asked.split("Input:\n", 1)[1]) == {"subject": "card declined"}
    [record] = app.store.shadow_records("route_ticket")
    assert (record.agent, record.agreed, record.parent_id) == ("triage", True, handle.id)


def test_staged_records_tools_with_side_effects_and_runs_read_only_ones(
    app: App, tmp_path: Path
) -> None:
    write(tmp_path, "shadow: {staged: true}\n")
    script = [call("read_mail") + call("send_mail", to="bob"), say("done")]
    with scripted("triage", script=script) as model:
        app.load_routines(tmp_path)
        handle = app.run_now("triage")
        app.drain()
    assert handle.get().state == RunState.SUCCEEDED
    assert SENT == []  # recorded, not executed
    results = {r.content for r in model.requests[-1].messages[-1].tool_results}
    assert any("staged, not performed" in r for r in results)
    assert '["hello"]' in results  # the read-only tool ran
    [staged] = app.store.audit_records(action=TOOL_STAGED)
    assert (staged.actor, staged.subject, staged.run_id) == ("svc-bot", "send_mail", handle.id)
    assert json.loads(staged.detail_json or "{}")["arguments"] == {"to": "bob"}
    [called] = app.store.audit_records(action=TOOL_CALLED)
    assert called.subject == "read_mail"


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        (
            "{job: route_tickets, sample: 0.05}",
            "6:15: unknown job 'route_tickets' (did you mean 'route_ticket'?); known: route_ticket",
        ),
        (
            "{job: route_ticket, sample: 2}",
            "6:37: field 'shadow.sample': Input should be less than or equal to 1, got 2",
        ),
        (
            "{job: route_ticket}",
            "6:9: field 'shadow': give either job: <a Python job> with sample: <a share, e.g. "
            "0.05>, or staged: true",
        ),
        (
            "{job: route_ticket, sample: 0.1, staged: true}",
            "6:9: field 'shadow': give either job: <a Python job> with sample: <a share, e.g. "
            "0.05>, or staged: true",
        ),
    ],
)
def test_a_bad_shadow_is_reported_where_it_is(
    app: App, tmp_path: Path, shadow: str, message: str
) -> None:
    write(tmp_path, f"shadow: {shadow}\n")
    with scripted("triage", script=[say("never")]):
        loaded = app.load_routines(tmp_path)
    assert [str(p) for p in loaded.problems] == [f"{tmp_path / 'triage.md'}:{message}"]
    assert "triage" not in app.definitions
    assert app.definitions["route_ticket"].escalation is None  # the job is left as it was
