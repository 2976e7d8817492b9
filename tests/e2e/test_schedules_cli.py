"""`rota schedules list|pause|resume|ticks|backfill` against a real store."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from rota.cli import app as cli
from rota.storage import SqlStore

APP = """
from rota import App, cron, every

app = App()

@app.job(schedule=cron("0 9 * * 1-5", tz="Europe/London"))
def morning(ctx):
    return None

@app.job(schedule=every("1m"), overlap="allow")
def minutely(ctx):
    return None
"""


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "sched_cli_app.py").write_text(textwrap.dedent(APP))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("ROTA_APP", "sched_cli_app:app")
    yield database_url
    sys.modules.pop("sched_cli_app", None)


def rota(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_list_shows_next_fire_times_in_zone_and_utc(project: str) -> None:
    result = rota("schedules", "list", "--json")
    assert result.exit_code == 0, result.output
    items = {i["name"]: i for i in json.loads(result.stdout)}
    morning = items["morning"]
    assert morning["trigger"] == "cron 0 9 * * 1-5 (Europe/London)"
    assert all(t.endswith(("+00:00", "+01:00")) for t in morning["next_local"])
    assert all("T09:00:00" in t for t in morning["next_local"])
    assert len(morning["next_utc"]) == 3 and morning["state"].startswith("not registered")


def test_pause_resume_ticks_and_backfill(project: str) -> None:
    store = SqlStore(project)
    store.migrate()
    from sched_cli_app import app  # the module the CLI loads too

    from rota.scheduler import Scheduler

    Scheduler(app).sync()
    assert rota("schedules", "pause", "minutely").exit_code == 0
    assert store.schedules(["minutely"])[0].paused
    listed = {i["name"]: i for i in json.loads(rota("schedules", "list", "--json").stdout)}
    assert listed["minutely"]["state"] == "paused" and listed["minutely"]["next_utc"] == []
    assert rota("schedules", "resume", "minutely").exit_code == 0
    assert not store.schedules(["minutely"])[0].paused

    done = rota(
        "schedules",
        "backfill",
        "minutely",
        "--from",
        "2026-01-01T00:00:00",
        "--to",
        "2026-01-01T00:10:00",
    )
    assert done.exit_code == 0, done.output
    assert "10 run(s) enqueued" in done.stdout
    again = rota(
        "schedules",
        "backfill",
        "minutely",
        "--from",
        "2026-01-01T00:00:00",
        "--to",
        "2026-01-01T00:10:00",
    )
    assert "0 run(s) enqueued" in again.stdout
    ticks = json.loads(rota("schedules", "ticks", "minutely", "--json").stdout)
    assert len(ticks) == 10 and {t["reason"] for t in ticks} == {"backfill"}
    store.close()
    app.close()


def test_unknown_schedule_and_bad_range_are_clear_errors(project: str) -> None:
    SqlStore(project).migrate()
    result = rota("schedules", "pause", "nightly")
    assert result.exit_code == 2
    assert "no schedule named 'nightly'" in result.stderr
    result = rota("schedules", "backfill", "minutely", "--from", "2026-01-02", "--to", "2026-01-01")
    assert result.exit_code == 2
    assert "--to must be after --from" in result.stderr


def test_a_backfill_dry_run_lists_what_it_would_enqueue_and_enqueues_nothing(
    project: str,
) -> None:
    store = SqlStore(project)
    store.migrate()
    window = ("--from", "2026-01-01T00:00:00", "--to", "2026-01-01T00:30:00")
    assert rota("schedules", "backfill", "minutely", "--from", "2026-01-01T00:00:00",
                "--to", "2026-01-01T00:05:00").exit_code == 0  # fmt: skip
    preview = rota("schedules", "backfill", "minutely", *window, "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "would enqueue 25 run(s)" in preview.stdout
    assert "5 fire time(s) already have a run" in preview.stdout
    assert "2026-01-01T00:05:00.000Z" in preview.stdout and "and 5 more" in preview.stdout
    assert len(store.ticks("minutely", limit=100)) == 5  # the dry run recorded nothing
    store.close()
