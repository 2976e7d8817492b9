"""Retention on both databases: a March history (jobs, a workflow with steps, an agent on a
scripted model, events, a run left waiting) pruned with `rota db prune` and `prune()`.
Checked: cost reports of the pruned period are unchanged (totals and every grouping), the
audit chain verifies from its checkpoint (and a checkpoint or record edited afterwards is
caught), a waiting run and its rows stay, a job's own retention wins over the default,
--dry-run changes nothing, and bad values are refused with one clear line (exit 2)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rota import Agent, App, FakeClock, RunState
from rota.agents.types import ModelRequest
from rota.cli import app as cli
from rota.cost import Price
from rota.identity.audit import verify_chain
from rota.retention import RetentionPolicy, prune
from rota.scheduler import Scheduler
from rota.storage import SqlStore
from rota.testing import ScriptedModel, say

SINCE, UNTIL = "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"
GROUPS = ("workflow", "agent", "principal", "day", "kind", "trigger")
DAY = 86400.0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ROTA_DATABASE_URL", "ROTA_APP", "ROTA_PRICES", "ROTA_RETENTION"):
        monkeypatch.delenv(var, raising=False)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build_app(database_url: str, clock: FakeClock, **options: Any) -> App:
    app = App(database_url, clock=clock, **options)

    @app.job
    def crunch(ctx: Any) -> None:
        clock.advance(120)

    @app.job(retention="400d")
    def ledger(ctx: Any) -> None:
        clock.advance(30)

    @app.workflow
    async def pipeline(ctx: Any) -> str:
        first = await ctx.step("fetch", lambda: "a")
        second = await ctx.step("store", lambda: first + "b")
        return str(second)

    @app.workflow
    async def patient(ctx: Any) -> Any:
        return await ctx.wait_for_event("never-sent")

    @app.job(escalate_to="reviewer")
    def triage(ctx: Any) -> Any:
        return ctx.escalate({"invoice": 7}, reason="unknown kind")

    def reply(request: ModelRequest, turn: int) -> Any:
        clock.advance(60)
        return say("approved")

    model = ScriptedModel("reviewer", fn=reply, tokens=(1000, 200))
    app.agent(Agent("reviewer", model, "Review.", price=Price(input=3, output=15)))
    return app


@pytest.fixture
def history(database_url: str) -> Iterator[dict[str, list[str]]]:
    """March 2026: 3 crunch, 2 ledger, 2 pipeline and 3 reviewer runs over four days, a
    triage job that escalated to the reviewer, two events, and a `patient` run left WAITING
    on the 6th."""
    clock = FakeClock(_at("2026-03-02T08:00"))
    app = build_app(database_url, clock)
    plan = [
        ("2026-03-02T09:00", "crunch"),
        ("2026-03-02T10:00", "reviewer"),
        ("2026-03-02T11:00", "pipeline"),
        ("2026-03-03T09:00", "crunch"),
        ("2026-03-03T10:00", "reviewer"),
        ("2026-03-03T12:00", "ledger"),
        ("2026-03-04T09:00", "crunch"),
        ("2026-03-04T11:00", "pipeline"),
        ("2026-03-04T15:00", "triage"),
        ("2026-03-05T10:00", "reviewer"),
        ("2026-03-05T12:00", "ledger"),
    ]
    ids: dict[str, list[str]] = {}
    try:
        for when, name in plan:
            clock.set(_at(when))
            handle = app.run_now(name, "go")
            app.drain(concurrency=1, prefetch=0, lease_s=10_000)
            assert handle.get().state == RunState.SUCCEEDED
            ids.setdefault(name, []).append(handle.id)
            if name == "triage":  # and the agent run it escalated to, folded into it
                ids.setdefault("escalated", []).append(handle.result()["run_id"])
        for when in ("2026-03-03T13:00", "2026-03-04T13:00"):
            clock.set(_at(when))
            app.emit("invoice.paid", {"n": 1})
        clock.set(_at("2026-03-06T09:00"))
        waiting = app.run_now("patient")
        app.drain(concurrency=1, prefetch=0, lease_s=10_000)
        assert waiting.get().state == RunState.WAITING
        ids["patient"] = [waiting.id]
        yield ids
    finally:
        app.close()


APP_SOURCE = """\
from rota import App

app = App()


@app.job(retention="400d")
def ledger(ctx):
    pass
"""


@pytest.fixture
def with_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`--app` for a module declaring what pruning reads of the app: ledger's retention."""
    module = f"retention_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    return ["--app", f"{module}:app"]


def rota(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args])


def reports(url: str) -> dict[str, Any]:
    """The March cost report, grouped every way, as JSON."""
    out = {}
    for by in GROUPS:
        result = rota(
            url, "cost", "report", "--since", SINCE, "--until", UNTIL, "--by", by, "--json"
        )
        assert result.exit_code == 0, result.output
        out[by] = json.loads(result.stdout)
    return out


def counts(url: str) -> dict[str, int]:
    store = SqlStore(url)
    try:
        tables = ("rota_runs", "rota_steps", "rota_usage", "rota_agent_sessions", "rota_events")
        tables += ("rota_waits", "rota_audit", "rota_cost_rollup")
        return {t: store.conn().execute(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in tables}
    finally:
        store.close()


def run_ids(url: str) -> set[str]:
    store = SqlStore(url)
    try:
        return {r["id"] for r in store.conn().execute("SELECT id FROM rota_runs")}
    finally:
        store.close()


def test_prune_keeps_cost_reports_and_waiting_runs_and_honours_job_retention(
    database_url: str, history: dict[str, list[str]], with_app: list[str]
) -> None:
    before = reports(database_url)
    assert before["workflow"]["rows"], "the history must cost something to compare"
    counted = counts(database_url)
    assert counted["rota_steps"] >= 4 and counted["rota_usage"] == 4
    kinds = {r["key"] for r in before["kind"]["rows"]}
    assert kinds == {"job", "agent", "hybrid"}  # the escalation is one hybrid record
    assert counted["rota_events"] == 2

    result = rota(database_url, *with_app, "db", "prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    pruned = json.loads(result.stdout)
    # crunch 3, pipeline 2, reviewer 3, triage and its agent run by the default; ledger
    # keeps its runs for 400 days.
    assert pruned["runs"] == 10
    assert pruned["runs_by_name"] == {"(default)": 10}
    assert pruned["events"] == 2
    assert pruned["rows"]["rota_usage"] == 4 and pruned["rows"]["rota_steps"] >= 4

    left = run_ids(database_url)
    assert left == {*history["ledger"], *history["patient"]}
    after = counts(database_url)
    assert after["rota_usage"] == 0 and after["rota_events"] == 0
    assert after["rota_waits"] == counted["rota_waits"]  # the waiting run's wait stays
    assert after["rota_cost_rollup"] > 0
    # The report of the pruned month is what it was, grouped every way.
    assert reports(database_url) == before
    # The waiting run still works: it is found and can be cancelled by hand.
    shown = rota(database_url, "runs", "show", history["patient"][0], "--json")
    assert json.loads(shown.stdout)["state"] == "WAITING"

    # Pruning again finds nothing and changes no report: a second scheduler is harmless.
    again = rota(database_url, *with_app, "db", "prune", "--older-than", "30d", "--json")
    assert json.loads(again.stdout)["runs"] == 0
    assert reports(database_url) == before
    assert rota(database_url, "audit", "verify").exit_code == 0


def test_per_job_retention_goes_by_its_own_cutoff(
    database_url: str, history: dict[str, list[str]]
) -> None:
    store = SqlStore(database_url)
    try:
        now = _at("2026-03-20T00:00").timestamp()  # 15 to 18 days after the runs
        policy = RetentionPolicy(default_s=30 * DAY, per_name={"ledger": 10 * DAY})
        report = prune(store, policy, now)
    finally:
        store.close()
    assert report.runs == 2 and report.per_name == {"ledger": 2}
    assert not set(history["ledger"]) & run_ids(database_url)
    assert set(history["crunch"]) <= run_ids(database_url)


def test_dry_run_changes_nothing(database_url: str, history: dict[str, list[str]]) -> None:
    before, reported = counts(database_url), reports(database_url)
    # Without an app, every run goes by --older-than: ledger's 2 runs too.
    result = rota(database_url, "db", "prune", "--older-than", "30d", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    would = json.loads(result.stdout)
    assert (would["dry_run"], would["runs"], would["events"]) == (True, 12, 2)
    assert counts(database_url) == before
    assert reports(database_url) == reported
    text = rota(database_url, "db", "prune", "--older-than", "30d", "--dry-run")
    assert "would prune 12 finished runs" in text.stdout


def test_audit_chain_verifies_from_the_checkpoint_and_catches_tampering(
    database_url: str, history: dict[str, list[str]]
) -> None:
    store = SqlStore(database_url)
    try:
        records = verify_chain(store).checked
        assert records >= 10  # a run.started record per execution
        # Far enough ahead that every record (stamped with the real time) is old.
        now = datetime.now(UTC).timestamp() + 400 * DAY
        report = prune(store, RetentionPolicy(default_s=30 * DAY), now)
        assert report.audit_records == records + 1  # and the retention.pruned record
        checked = verify_chain(store)
        assert checked.ok, checked.problems
        assert checked.checked == 1  # only the audit.pruned record that names the checkpoint
        last = store.audit_records(limit=1)[0]
        assert last.action == "audit.pruned"
        assert last.detail["through_seq"] == report.checkpoint_seq
        store.audit("rota:test", "run.requested")
        assert verify_chain(store).ok

        # Moving the checkpoint forward (to hide deleted records) is caught.
        meta = store.conn().execute("SELECT value FROM rota_meta WHERE key = 'audit_checkpoint'")
        value = json.loads(meta[0]["value"])
        store.conn().execute(
            "UPDATE rota_meta SET value = :v WHERE key = 'audit_checkpoint'",
            {"v": json.dumps({**value, "seq": value["seq"] + 1})},
        )
        problems = verify_chain(store).problems
        assert [p.check for p in problems][:1] == ["checkpoint"]
    finally:
        store.close()
    result = rota(database_url, "audit", "verify")
    assert result.exit_code == 1
    assert "pruning checkpoint" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yesterday", "--older-than 'yesterday' is not a duration"),
        ("10m", "--older-than must be at least 1h"),
        ("-3d", "is not a duration"),
        ("", "nothing says how long to keep runs"),
    ],
)
def test_bad_older_than_is_refused_and_nothing_is_pruned(
    database_url: str, history: dict[str, list[str]], value: str, expected: str
) -> None:
    before = counts(database_url)
    args = ["db", "prune", "--older-than", value] if value else ["db", "prune"]
    result = rota(database_url, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert counts(database_url) == before


def test_bad_retention_options_are_refused_at_definition(sqlite_url: str) -> None:
    app = App(sqlite_url)
    try:
        with pytest.raises(Exception, match="retention must be at least 1h"):
            app.job(lambda ctx: None, name="quick", retention="5m")
        with pytest.raises(Exception, match="retention 'soon' is not a duration"):
            app.job(lambda ctx: None, name="soon", retention="soon")
    finally:
        app.close()
    with pytest.raises(Exception, match="retention must be at least 1h"):
        App(sqlite_url, retention=60)


def test_the_scheduler_prunes_once_per_turn(
    database_url: str, history: dict[str, list[str]]
) -> None:
    clock = FakeClock(_at("2026-05-01T00:00"))
    app = build_app(database_url, clock, retention="30d")
    try:
        first, second = Scheduler(app), Scheduler(app)
        report = first.prune_if_due()
        assert report is not None and report.runs == 10
        assert second.prune_if_due() is None  # the day's turn is taken
        clock.advance(DAY)
        later = second.prune_if_due()
        assert later is not None and later.runs == 0
    finally:
        app.close()
    assert run_ids(database_url) == {*history["ledger"], *history["patient"]}


def test_runs_with_model_usage_in_this_month_stay_for_monthly_budgets(
    database_url: str, history: dict[str, list[str]]
) -> None:
    store = SqlStore(database_url)
    try:
        now = _at("2026-03-31T12:00").timestamp()  # every run is older than a day
        report = prune(store, RetentionPolicy(default_s=DAY), now)
    finally:
        store.close()
    left = run_ids(database_url)
    # Budgets of March read this month's spending from the usage rows: the agent runs (and
    # the job that escalated to one) stay until April; plain job runs go.
    assert {*history["reviewer"], *history["triage"], *history["escalated"]} <= left
    assert not {*history["crunch"], *history["pipeline"]} & left
    assert report.runs == 7  # crunch 3, pipeline 2, ledger 2


def test_only_an_unbroken_old_prefix_of_the_audit_chain_goes(database_url: str) -> None:
    store = SqlStore(database_url)
    try:
        store.migrate()
        old, young = _at("2026-01-10T00:00").timestamp(), _at("2026-06-01T00:00").timestamp()
        for at in (old, old, young, old, old):  # a record may carry its own time
            store.audit("rota:test", "run.requested", at=at)
        now = _at("2026-05-01T00:00").timestamp()
        policy = RetentionPolicy(default_s=30 * DAY)
        assert prune(store, policy, now, dry_run=True).audit_records == 2
        report = prune(store, policy, now)
        assert (report.audit_records, report.checkpoint_seq) == (2, 2)
        left = [r.seq for r in reversed(store.audit_records(limit=10))]
        assert left == [3, 4, 5, 6]  # the young record stops the prefix; 6 is audit.pruned
        checked = verify_chain(store)
        assert checked.ok and checked.checked == 4
        # Deleting a record after the checkpoint is still caught.
        store.conn().execute("DELETE FROM rota_audit WHERE seq = 4")
        assert [p.check for p in verify_chain(store).problems] == ["missing"]
    finally:
        store.close()


def test_a_prune_asked_to_stop_ends_after_its_batch_and_the_next_one_goes_on(
    database_url: str, history: dict[str, list[str]]
) -> None:
    store = SqlStore(database_url)
    policy = RetentionPolicy(default_s=30 * DAY)
    now = _at("2026-05-01T00:00").timestamp()
    try:
        asked = iter([False])  # not stopping when it starts; stopping from then on
        first = prune(store, policy, now, batch=2, stopping=lambda: next(asked, True))
        assert (first.runs, first.events) == (2, 0)  # one batch; events wait too
        rest = prune(store, policy, now, batch=2)
        assert (rest.runs, rest.events) == (10, 2)
    finally:
        store.close()
    assert run_ids(database_url) == set(history["patient"])


def _insert(store: SqlStore, table: str, rows: list[dict[str, Any]]) -> None:
    with store.tx() as conn:
        for row in rows:
            names = ", ".join(row)
            conn.execute(
                f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})", row
            )


def _ids(store: SqlStore, table: str) -> set[str]:
    return {r["id"] for r in store.conn().execute(f"SELECT id FROM {table}")}


def test_old_ticks_rejections_alerts_and_capped_runs_go_keeping_what_is_still_read(
    database_url: str,
) -> None:
    """A schedule's newest tick and newest tick that fired stay (the silence watchdog reads
    them), as do an undelivered alert and a deferred run whose window has not come."""
    store = SqlStore(database_url)
    store.migrate()
    now = _at("2026-06-01T00:00:00Z").timestamp()
    old = now - 60 * DAY

    def tick(id_: str, schedule: str, day: int, outcome: str, reason: str | None = None) -> Any:
        at = old + day * DAY
        return {"id": id_, "schedule": schedule, "fire_at": at, "last_fire_at": at,
                "outcome": outcome, "reason": reason, "decided_at": at}  # fmt: skip

    _insert(store, "rota_ticks", [
        tick("a1", "hourly", 1, "enqueued"), tick("a2", "hourly", 2, "enqueued"),
        tick("a3", "hourly", 3, "skipped", "overlap"), tick("a4", "hourly", 4, "skipped", "paused"),
        tick("b1", "paused", 1, "skipped", "paused"), tick("b2", "paused", 2, "skipped", "paused"),
        tick("c1", "fresh", 1, "enqueued"), tick("c2", "fresh", 59, "enqueued"),
    ])  # fmt: skip
    _insert(store, "rota_rejections", [
        {"id": i, "hook": "h", "status": 401, "reason": "signature", "message": "m",
         "body_bytes": 2, "received_at": at} for i, at in (("r-old", old), ("r-new", now))
    ])  # fmt: skip
    _insert(store, "rota_alerts", [
        {"id": i, "key": i, "sink": "s", "kind": "failure", "subject": "x", "text": "t",
         "detail": "{}", "created_at": old, "state": state}
        for i, state in (("al-sent", "delivered"), ("al-failed", "failed"), ("al-due", "pending"))
    ])  # fmt: skip
    _insert(store, "rota_capped_runs", [
        {"id": i, "name": "n", "trigger": "api", "outcome": outcome, "reason": "per_day",
         "created_at": old, "deferred_to": to}
        for i, outcome, to in (
            ("cap-dropped", "dropped", None), ("cap-later", "deferred", now + DAY)
        )
    ])  # fmt: skip

    dry = prune(store, RetentionPolicy(30 * DAY), now, dry_run=True)
    assert dry.records == {
        "rota_ticks": 4, "rota_rejections": 1, "rota_alerts": 2, "rota_capped_runs": 1,
    }  # fmt: skip
    assert len(_ids(store, "rota_ticks")) == 8  # a dry run deletes nothing

    report = prune(store, RetentionPolicy(30 * DAY), now)
    assert report.records == dry.records
    assert _ids(store, "rota_ticks") == {"a2", "a4", "b2", "c2"}
    assert store.last_fired("hourly") == old + 2 * DAY
    assert _ids(store, "rota_rejections") == {"r-new"}
    assert _ids(store, "rota_alerts") == {"al-due"}
    assert _ids(store, "rota_capped_runs") == {"cap-later"}
    assert prune(store, RetentionPolicy(30 * DAY), now).records == dict.fromkeys(dry.records, 0)
    assert verify_chain(store).ok
