"""Routines on both databases: loaded into the same registry as Python definitions, run as
their principal (a personal routine never holds a scope its owner lacks; a revoke applies at
the next call), managed routines as their service account; caps drop and defer exactly as
configured and every run held back is recorded; a routine file edited while the scheduler
runs fires no surprise run; the CLI verbs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from routine_kit import SENT, START, read_mail, send_mail, write
from typer.testing import CliRunner

from rota import App, tool
from rota.alerts import Alerts, webhook
from rota.cli import app as cli
from rota.clock import FakeClock
from rota.errors import ProviderError
from rota.identity import admin
from rota.identity.directory import directory_for
from rota.model import RunState
from rota.routines import RunDropped
from rota.routines.caps import CAPPED_RUNS
from rota.scheduler import Scheduler
from rota.storage.audit import TOOL_CALLED, TOOL_DENIED
from rota.testing import call, say, scripted

HUMAN = admin.Actor("root", "human")


def routine(name: str, who: str, *, extra: str = "", tools: str = "[]", model: str = "echo") -> str:
    return (
        f"---\nname: {name}\n{who}\nmodel: scripted:{model}\ntools: {tools}\n{extra}"
        "---\nDo the thing.\n"
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def app(database_url: str, clock: FakeClock) -> Iterator[App]:
    a = App(database_url, clock=clock)
    a.principal("alice", kind="user", scopes=["mail:read"])
    a.principal("svc-bot", kind="service", scopes=["mail:read", "mail:send"])
    a.principal("root", kind="user", roles=["admin"])
    yield a
    a.close()


# -- loading and running ---------------------------------------------------------------


def test_routines_load_beside_python_definitions_and_bad_files_do_not_stop_good_ones(
    app: App, tmp_path: Path, echo: Any
) -> None:
    @app.job
    def nightly(ctx: Any) -> str:
        return "ok"

    write(tmp_path, "digest", routine("digest", "owner: alice"))
    write(tmp_path, "broken", routine("broken", "owner: nobody"))
    loaded = app.load_routines(tmp_path)
    assert [r.name for r in loaded.routines] == ["digest"]
    assert [str(p) for p in loaded.problems] == [
        f"{tmp_path / 'broken.md'}:3:8: unknown user principal 'nobody'; known: alice, root"
    ]
    assert set(app.definitions) == {"nightly", "digest"}
    assert app.definitions["digest"].kind == "agent"
    handle = app.run_now("digest")
    app.drain()
    run = handle.get()
    assert (run.state, run.result, run.principal) == (RunState.SUCCEEDED, "done", "alice")
    assert echo.requests[0].messages[0].text == "Do the thing."


def test_fired_text_is_appended_to_the_prompt(app: App, tmp_path: Path, echo: Any) -> None:
    write(tmp_path, "digest", routine("digest", "owner: alice"))
    app.load_routines(tmp_path)
    app.run_now("digest", {"text": "Only mail from Bob."})
    app.drain()
    assert echo.requests[0].messages[0].text == "Do the thing.\n\nOnly mail from Bob."


def test_a_personal_routine_never_gets_a_scope_its_owner_lacks(app: App, tmp_path: Path) -> None:
    SENT.clear()
    app.routines.tool(send_mail, read_mail)
    write(tmp_path, "mailer", routine("mailer", "owner: alice", tools="[read_mail, send_mail]"))
    script = [call("send_mail", to="bob"), say("tried")]
    with scripted("echo", script=script) as model:
        app.load_routines(tmp_path)
        handle = app.run_now("mailer")
        app.drain()
    assert handle.get().state == RunState.SUCCEEDED
    assert SENT == []  # alice lacks mail:send: the tool never ran
    assert [t.name for t in model.requests[0].tools] == ["read_mail"]
    denial = model.requests[-1].messages[-1].tool_results[0]
    assert "principal 'alice' lacks the scope mail:send" in denial.content
    [record] = app.store.audit_records(action=TOOL_DENIED)
    assert (record.actor, record.subject, record.run_id) == ("alice", "send_mail", handle.id)


def test_a_revoke_takes_effect_on_the_routines_next_call(app: App, tmp_path: Path) -> None:
    reads: list[int] = []

    @tool(scopes=["mail:read"], read_only=True)
    def inbox() -> str:
        """Unread mail."""
        reads.append(1)
        if len(reads) == 1:  # alice loses mail:read while the routine runs
            admin.revoke(app.store, "alice", HUMAN, scopes=["mail:read"])
            directory_for(app.store).invalidate()
        return "hello"

    app.routines.tool(inbox)
    write(tmp_path, "reader", routine("reader", "owner: alice", tools="[inbox]"))
    with scripted("echo", script=[call("inbox"), call("inbox"), say("x")]):
        app.load_routines(tmp_path)
        handle = app.run_now("reader")
        app.drain()
    assert reads == [1]
    actions = [r.action for r in app.store.audit_records() if r.run_id == handle.id]
    assert actions.count(TOOL_CALLED) == 1 and actions.count(TOOL_DENIED) == 1


def test_a_managed_routine_runs_as_its_service_account(app: App, tmp_path: Path) -> None:
    SENT.clear()
    app.routines.tool(send_mail)
    write(tmp_path, "bot", routine("bot", "run_as: svc-bot", tools="[send_mail]"))
    with scripted("echo", script=[call("send_mail", to="bob"), say("sent")]):
        app.load_routines(tmp_path)
        handle = app.run_now("bot")
        app.drain()
    run = handle.get()
    assert (run.state, run.principal) == (RunState.SUCCEEDED, "svc-bot")
    assert SENT == ["bob"]
    [record] = app.store.audit_records(action=TOOL_CALLED)
    assert (record.actor, record.run_id) == ("svc-bot", handle.id)


def test_an_approval_rule_gates_a_tool_over_an_argument_value(app: App, tmp_path: Path) -> None:
    SENT.clear()
    app.routines.tool(send_mail)
    rule = "approval:\n  - tools: [send_mail]\n    when: {to: {in: [ceo]}}\n    timeout: 1h\n"
    write(tmp_path, "bot", routine("bot", "run_as: svc-bot", tools="[send_mail]", extra=rule))
    script = [call("send_mail", to="bob") + call("send_mail", to="ceo"), say("sent")]
    with scripted("echo", script=script):
        app.load_routines(tmp_path)
        handle = app.run_now("bot")
        app.drain()
        assert handle.get().state == RunState.WAITING
        assert SENT == ["bob"]  # not gated; the mail to the ceo waits for a human
        [request] = app.store.approvals()
        app.store.decide_approval(request.id, "root", True, None, app.clock.now(), via="test")
        app.drain()
    assert handle.get().state == RunState.SUCCEEDED
    assert SENT == ["bob", "ceo"]


def test_a_hybrid_routine_takes_its_jobs_escalations(app: App, tmp_path: Path, echo: Any) -> None:
    @app.job
    def sort_ticket(ctx: Any, ticket: Any) -> Any:
        if ticket["kind"] == "known":
            return "sorted by code"
        return ctx.escalate(ticket, reason="unknown kind")

    extra = "mode: hybrid\njob: sort_ticket\ntriggers:\n  - event: ticket.opened\n"
    write(tmp_path, "triage", routine("triage", "run_as: svc-bot", extra=extra))
    app.load_routines(tmp_path)
    emitted = app.emit("ticket.opened", {"kind": "odd"})
    app.drain()
    [job_run] = [h.get() for h in emitted.runs]
    assert job_run.name == "sort_ticket"
    [agent_run] = [r for r in app.runs(names=["triage"])]
    assert (agent_run.state, agent_run.parent_id) == (RunState.SUCCEEDED, job_run.id)
    assert '"kind": "odd"' in echo.requests[0].messages[0].text


# -- caps --------------------------------------------------------------------------------


def test_caps_drop_over_the_cap_and_record_every_dropped_run(
    app: App, tmp_path: Path, clock: FakeClock, echo: Any
) -> None:
    caps = "triggers:\n  - event: ping\ncaps: {per_day: 2, over: drop}\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=caps))
    app.load_routines(tmp_path)
    before = CAPPED_RUNS.labels("digest", "dropped", "per_day")._value.get()
    app.run_now("digest")
    emitted = app.emit("ping", {"n": 1})
    assert len(emitted.runs) == 1
    assert app.emit("ping", {"n": 2}).runs == []  # the third run today: dropped, recorded
    with pytest.raises(RunDropped, match="per_day 2 used up"):
        app.run_now("digest")
    records = app.store.capped_runs(["digest"])
    assert [(r.outcome, r.reason, r.trigger) for r in records] == [
        ("dropped", "per_day 2 used up", "manual"),
        ("dropped", "per_day 2 used up", "event"),
    ]
    assert json.loads(records[1].payload or "null") == {"n": 2}
    assert CAPPED_RUNS.labels("digest", "dropped", "per_day")._value.get() == before + 2
    assert len(app.runs(names=["digest"])) == 2
    clock.advance(86_400)  # the next UTC day has room again
    assert app.run_now("digest").created


def test_caps_defer_to_the_next_window(
    app: App, tmp_path: Path, clock: FakeClock, echo: Any
) -> None:
    caps = "caps: {per_hour: 1, over: defer}\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=caps))
    app.load_routines(tmp_path)
    clock.advance(600)
    first = app.run_now("digest")
    second = app.run_now("digest")
    third = app.run_now("digest")
    assert first.get().run_after == START + 600
    assert second.get().run_after == START + 3600  # the next UTC hour
    assert third.get().run_after == START + 7200  # that one is full too
    records = app.store.capped_runs(["digest"])
    assert [(r.id, r.outcome, r.deferred_to) for r in records] == [
        (third.id, "deferred", START + 7200),
        (second.id, "deferred", START + 3600),
    ]
    app.drain()
    assert [h.get().state for h in (first, second, third)] == [RunState.SUCCEEDED] * 3


def test_principal_caps_count_every_run_as_the_principal(
    app: App, tmp_path: Path, echo: Any
) -> None:
    caps = "caps: {principal_per_day: 2}\n"
    write(tmp_path, "one", routine("one", "owner: alice", extra=caps))
    write(tmp_path, "two", routine("two", "owner: alice", extra=caps))
    app.load_routines(tmp_path)
    app.run_now("one")
    app.run_now("two")
    with pytest.raises(RunDropped, match="principal_per_day 2 used up"):
        app.run_now("one")
    [record] = app.store.capped_runs()
    assert (record.name, record.principal) == ("one", "alice")


def test_cooldown_and_stop_after(app: App, tmp_path: Path, clock: FakeClock, echo: Any) -> None:
    extra = "cooldown: 10m\nstop_after: 2026-01-01T01:00:00Z\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=extra))
    app.load_routines(tmp_path)
    app.run_now("digest")
    with pytest.raises(RunDropped, match="cooldown 600s"):
        app.run_now("digest")
    clock.advance(600)
    app.run_now("digest")
    clock.advance(3600)
    with pytest.raises(RunDropped, match="stop_after passed"):
        app.run_now("digest")
    assert [r.reason.split(" ")[0] for r in app.store.capped_runs()] == ["stop_after", "cooldown"]


def test_runs_list_dropped_shows_every_held_run(
    app: App, tmp_path: Path, database_url: str, echo: Any
) -> None:
    write(tmp_path, "digest", routine("digest", "owner: alice", extra="caps: {per_day: 1}\n"))
    app.load_routines(tmp_path)
    app.run_now("digest")
    with pytest.raises(RunDropped):
        app.run_now("digest")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--database-url", database_url, "runs", "list", "--dropped", "--json"]
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["name"], row["outcome"], row["reason"]) == (
        "digest",
        "dropped",
        "per_day 1 used up",
    )
    text = runner.invoke(cli, ["--database-url", database_url, "runs", "list", "--dropped"])
    assert "per_day 1 used up" in text.output


# -- an edited routine fires no surprise run ---------------------------------------------


def test_a_changed_schedule_fires_no_surprise_run(
    database_url: str, tmp_path: Path, clock: FakeClock, echo: Any
) -> None:
    every_minute = "triggers:\n  - cron: '* * * * *'\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=every_minute))

    def started() -> tuple[App, Scheduler]:
        a = App(database_url, clock=clock)
        a.principal("alice", kind="user", scopes=["mail:read"])
        a.load_routines(tmp_path)
        s = Scheduler(a)
        s.sync()
        return a, s

    first, scheduler = started()
    clock.advance(90)
    scheduler.tick()
    first.drain()  # finished, so that overlap="skip" does not hide a later tick
    ticked = len(first.runs(names=["digest"]))
    assert ticked >= 1
    first.close()
    # Edited while the scheduler was down for an hour: the new schedule starts from now.
    every_hour = "triggers:\n  - cron: '30 * * * *'\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=every_hour))
    clock.advance(3600)
    second, scheduler = started()
    scheduler.tick()
    second.drain()
    assert len(second.runs(names=["digest"])) == ticked  # no missed minute, no missed :30
    clock.set(START + 3600 + 1800)  # 01:30: the new schedule's first fire
    scheduler.tick()
    assert len(second.runs(names=["digest"])) == ticked + 1
    second.close()


# -- the CLI -----------------------------------------------------------------------------

APP_MODULE = """
from rota import App
from rota.cost.plans import ApiPlan
from rota.testing import register_scripted, say

register_scripted("echo", script=[say("done")])
app = App()
app.principal("alice", kind="user", scopes=["mail:read"])
app.principal("svc-bot", kind="service", scopes=["mail:read"])
app.routines.plan(ApiPlan(name="api"))
loaded = app.load_routines()
"""


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "proj"
    folder.mkdir()
    module = f"routines_app_{abs(hash(str(tmp_path)))}"
    (folder / f"{module}.py").write_text(APP_MODULE)
    write(folder / "routines", "digest", routine("digest", "owner: alice", extra="billing: api\n"))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("ROTA_APP", f"{module}:app")
    monkeypatch.syspath_prepend(str(folder))
    yield folder


def test_cli_list_show_fire_validate_schema(project: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["routines", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)["routines"]
    assert (row["name"], row["kind"], row["runs_as"]) == ("digest", "personal", "alice")

    fired = runner.invoke(cli, ["routines", "fire", "digest", "--text", "hi", "--json"])
    assert fired.exit_code == 0, fired.output
    assert json.loads(fired.output)["state"] == "ENQUEUED"

    shown = runner.invoke(cli, ["routines", "show", "digest", "--json"])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)
    assert (found["kind"], found["runs_as"], found["scopes"]) == (
        "personal",
        "alice",
        ["mail:read"],
    )
    assert found["cost"]["billed_under"] == "api"
    assert found["cost"]["plans"] == [
        {"plan": "api", "kind": "api", "total_usd": "0", "dropped_runs": 0, "billed": True}
    ]
    text = runner.invoke(cli, ["routines", "show", "digest"])
    assert "personal routine of user alice" in text.output and "scopes: mail:read" in text.output

    assert runner.invoke(cli, ["routines", "validate"]).exit_code == 0
    write(project / "routines", "bad", routine("bad", "run_as: alice"))
    bad = runner.invoke(cli, ["routines", "validate", "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["routines"] == ["digest"]
    assert report["problems"] == [
        {
            "file": str(project / "routines" / "bad.md"),
            "line": 3,
            "column": 9,
            "message": "run_as must name a service principal, and 'alice' is a user: use "
            "owner for a user (a personal routine)",
        }
    ]
    missing = runner.invoke(cli, ["routines", "show", "nope"])
    assert missing.exit_code == 3 and "no routine named 'nope'" in missing.output

    schema = runner.invoke(cli, ["routines", "schema"])
    assert json.loads(schema.output)["title"] == "rota routine front matter"


def test_notify_sends_the_routines_alerts_to_the_sinks_it_names(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    sinks = [
        webhook("http://127.0.0.1:9/ops", secret="ALERTS_SECRET", name="ops"),
        webhook("http://127.0.0.1:9/pager", secret="ALERTS_SECRET", name="pager"),
    ]
    app = App(database_url, clock=clock, alerts=Alerts(sinks=sinks))
    app.principal("alice", kind="user")
    extra = "notify: {sinks: [pager], approval_after: null}\n"
    write(tmp_path, "digest", routine("digest", "owner: alice", extra=extra, model="broken"))
    try:
        with scripted("broken", script=[ProviderError("scripted", "the model is down")]):
            app.load_routines(tmp_path)
            handle = app.run_now("digest")
            app.drain()
        assert handle.get().state == RunState.FAILED
        assert app.alert_policy.jobs["digest"] == Alerts(sinks=("pager",), approval_after=None)
        app.check_alerts()
        assert [(a.sink, a.kind, a.subject) for a in app.store.alerts()] == [
            ("pager", "failure", "digest")
        ]
    finally:
        app.close()
