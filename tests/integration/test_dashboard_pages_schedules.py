"""The Schedules pages through Starlette's TestClient, on SQLite and PostgreSQL: next fire
times, last runs and skipped ticks with their reasons; pause and resume (operator, CSRF,
audited); backfill's preview and confirmed enqueue, with its limits; and bad queries and
forms as 4xx pages naming the field, changing nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_client import csrf_of, signed_in

from rota import App, FakeClock, every
from rota.identity.admin import Actor
from rota.scheduler import Scheduler, set_paused

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = "start=2027-01-01T00:00&end=2027-01-02T00:00"


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = App(database_url, clock=FakeClock(START))
    built.principal("watcher", kind="user", roles=["viewer"])
    built.principal("ops", kind="user", roles=["operator"])

    @built.job(trigger=every("1h"))
    def hourly(ctx: Any, payload: Any) -> str:
        return "synced"

    @built.job(trigger=every("1m"))
    def minutely(ctx: Any, payload: Any) -> str:
        return "polled"

    @built.job(trigger=every("1d"))
    def daily(ctx: Any, payload: Any) -> str:
        return "reported"

    try:
        yield built
    finally:
        built.close()


def registered(app: App, *names: str) -> Scheduler:
    """The app's scheduler with `names` registered (the others stay unregistered)."""
    scheduler = Scheduler(app)
    scheduler.specs = {n: s for n, s in scheduler.specs.items() if n in names}
    scheduler.sync()
    return Scheduler(app)


def text(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_the_list_shows_next_fires_state_and_last_tick(app: App) -> None:
    scheduler = registered(app, "hourly")
    app.clock.advance(3601)
    scheduler.tick()
    with signed_in(app, "ops") as client:
        page = client.get("/schedules").text
    shown = text(page)
    assert "hourly every 1h active 2027-01-15 10:00:00Z" in shown
    assert "daily every 1d unregistered" in shown and "rota scheduler" in shown
    tick = app.store.ticks("hourly", outcome="enqueued")[0]
    assert f'href="/runs/{tick.run_id}"' in page
    assert 'action="/schedules/hourly/pause"' in page
    assert 'action="/schedules/daily/pause"' not in page  # not registered: nothing to pause


def test_the_page_shows_last_runs_and_skipped_ticks_with_their_reasons(app: App) -> None:
    scheduler = registered(app, "hourly")
    app.clock.advance(3601)
    scheduler.tick()
    app.clock.advance(3600)
    scheduler.tick()  # the first run is still queued: skipped (overlap)
    set_paused(app.store, "hourly", True, app.clock.now(), Actor("root", "human"))
    app.clock.advance(7200)
    scheduler.tick()  # paused: skipped (paused), two ticks at once
    with signed_in(app, "watcher") as client:
        page = client.get("/schedules/hourly").text
    shown = text(page)
    assert "hourly paused" in shown and "None while paused." in shown
    enqueued = app.store.ticks("hourly", outcome="enqueued")
    assert f'href="/runs/{enqueued[0].run_id}"' in page and "enqueued" in shown
    skipped = shown[shown.index("Skipped ticks") :]
    for reason in ("paused", "overlap", "misfire"):
        assert reason in skipped
    assert "Resume" not in shown and "Backfill" not in shown  # a viewer: read-only


def test_an_operator_pauses_and_resumes_a_schedule(app: App) -> None:
    registered(app, "hourly")
    with signed_in(app, "ops") as client:
        csrf = csrf_of(client.get("/schedules").text)
        paused = client.post("/schedules/hourly/pause", data={"csrf": csrf, "back": "list"})
        assert (paused.status_code, paused.headers["location"]) == (303, "/schedules")
        assert app.store.schedules(["hourly"])[0].paused
        assert "Resume" in client.get("/schedules/hourly").text
        resumed = client.post("/schedules/hourly/resume", data={"csrf": csrf})
        assert (resumed.status_code, resumed.headers["location"]) == (303, "/schedules/hourly")
    assert not app.store.schedules(["hourly"])[0].paused
    changes = app.store.audit_page(
        actor="ops", action="schedule.changed", since=None, until=None, before_seq=None, limit=5
    )
    assert [c.detail for c in changes] == [{"paused": False}, {"paused": True}]


def test_a_viewer_may_not_pause(app: App) -> None:
    registered(app, "hourly")
    with signed_in(app, "watcher") as client:
        csrf = csrf_of(client.get("/schedules").text)
        refused = client.post("/schedules/hourly/pause", data={"csrf": csrf})
        preview = client.get(f"/schedules/hourly/backfill?{DAY}")
    assert refused.status_code == 403 and "lacks the role 'operator'" in html.unescape(refused.text)
    assert preview.status_code == 403
    assert not app.store.schedules(["hourly"])[0].paused


@pytest.mark.parametrize(
    ("target", "form"),
    [
        ("/schedules/hourly/pause", {}),
        ("/schedules/hourly/resume", {"csrf": "forged"}),
        (
            "/schedules/hourly/backfill",
            {"start": "2027-01-01", "end": "2027-01-02", "confirm": "24"},
        ),
    ],
)
def test_every_schedule_form_needs_the_csrf_token(
    app: App, target: str, form: dict[str, str]
) -> None:
    registered(app, "hourly")
    with signed_in(app, "ops") as client:
        refused = client.post(target, data=form)
    assert refused.status_code == 403
    assert "security token is missing or wrong" in refused.text
    assert not app.store.schedules(["hourly"])[0].paused
    assert app.store.ticks("hourly") == []


def test_backfill_previews_then_enqueues_what_it_showed(app: App) -> None:
    registered(app, "hourly")
    with signed_in(app, "ops") as client:
        page = client.get(f"/schedules/hourly/backfill?{DAY}").text
        shown = text(page)
        assert "24 fire times in the range" in shown and "24 runs to enqueue" in shown
        assert "2027-01-01T00:00:00.000Z first fire time" in shown
        assert "2027-01-01T23:00:00.000Z last fire time" in shown
        assert app.store.ticks("hourly") == []  # a preview enqueues nothing
        assert 'name="confirm" value="24"' in page
        form = {"csrf": csrf_of(page), "start": "2027-01-01T00:00", "end": "2027-01-02T00:00"}
        done = client.post("/schedules/hourly/backfill", data={**form, "confirm": "24"})
        assert (done.status_code, done.headers["location"]) == (
            303,
            "/schedules/hourly?backfilled=24",
        )
        assert len(app.store.ticks("hourly", outcome="enqueued")) == 24
        assert "Backfill: 24 run(s) enqueued." in text(client.get(done.headers["location"]).text)
        again = text(client.get(f"/schedules/hourly/backfill?{DAY}").text)
        assert "24 already have a run" in again and "nothing to enqueue" in again
        stale = client.post("/schedules/hourly/backfill", data={**form, "confirm": "24"})
    assert stale.status_code == 409
    assert "would now enqueue 0 run(s) of 'hourly', not the 24 confirmed" in html.unescape(
        stale.text
    )
    assert len(app.store.ticks("hourly")) == 24


def test_a_large_backfill_needs_its_number_typed_and_a_huge_one_is_refused(app: App) -> None:
    registered(app, "minutely")
    with signed_in(app, "ops") as client:
        page = client.get(f"/schedules/minutely/backfill?{DAY}").text
        assert "type 1440 to confirm" in text(page)
        assert 'id="backfill-confirm"' in page and 'value="1440"' not in page
        form = {"csrf": csrf_of(page), "start": "2027-01-01T00:00", "end": "2027-01-02T00:00"}
        for wrong in ("1000", "1441"):
            refused = client.post("/schedules/minutely/backfill", data={**form, "confirm": wrong})
            assert refused.status_code == 409
        assert app.store.ticks("minutely") == []
        done = client.post("/schedules/minutely/backfill", data={**form, "confirm": "1,440"})
        assert done.status_code == 303
        assert len(app.store.ticks("minutely", limit=2000)) == 1440
        huge = client.get("/schedules/minutely/backfill?start=2027-01-01&end=2027-03-01")
    assert huge.status_code == 422
    assert "more than 50,000 fire times" in html.unescape(huge.text)


@pytest.mark.parametrize(
    ("target", "status", "names"),
    [
        ("/schedules?x=1", 400, "unknown query parameter 'x'"),
        ("/schedules/hourly?backfilled=-5", 400, "query parameter backfilled must be"),
        ("/schedules/nope", 404, "no schedule named 'nope'"),
        (
            "/schedules/hourly/backfill?start=yesterday&end=2027-01-02",
            400,
            "query parameter start must be an ISO 8601 time",
        ),
        ("/schedules/hourly/backfill?start=2027-01-01", 400, "query parameter end is required"),
        ("/schedules/hourly/backfill?start=2027-01-02&end=2027-01-01", 400, "must be after start"),
        (
            "/schedules/hourly/backfill?start=99999-01-01&end=2027-01-01",
            400,
            "query parameter start must be",
        ),
        ("/schedules/nope/backfill?" + DAY, 404, "no schedule named 'nope'"),
    ],
)
def test_a_bad_query_is_a_4xx_page_naming_it(
    app: App, target: str, status: int, names: str
) -> None:
    registered(app, "hourly")
    with signed_in(app, "ops") as client:
        answer = client.get(target)
    assert answer.status_code == status, answer.text[:300]
    assert names in html.unescape(answer.text)
    assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("target", "form", "status", "names"),
    [
        (
            "/schedules/hourly/pause",
            {"back": "elsewhere"},
            400,
            "form field back must be list or detail",
        ),
        ("/schedules/hourly/pause", {"why": "x"}, 400, "unknown form field 'why'"),
        ("/schedules/daily/pause", {}, 409, "schedule 'daily' is not registered yet"),
        ("/schedules/nope/pause", {}, 404, "no schedule named 'nope'"),
        (
            "/schedules/hourly/backfill",
            {"end": "2027-01-02", "confirm": "1"},
            400,
            "form field start is required",
        ),
        (
            "/schedules/hourly/backfill",
            {"start": "soon", "end": "2027-01-02", "confirm": "1"},
            400,
            "form field start must be an ISO 8601 time",
        ),
        (
            "/schedules/hourly/backfill",
            {"start": "2027-01-01", "end": "2027-01-02", "confirm": "all"},
            400,
            "form field confirm must be the number of runs",
        ),
        (
            "/schedules/hourly/backfill",
            {"start": "2027-01-01", "end": "2027-01-02"},
            400,
            "form field confirm must be",
        ),
        (
            "/schedules/hourly/backfill",
            {"start": "2027-01-02", "end": "2027-01-01", "confirm": "1"},
            400,
            "must be after start",
        ),
    ],
)
def test_a_bad_form_is_a_4xx_naming_the_field_and_changes_nothing(
    app: App, target: str, form: dict[str, str], status: int, names: str
) -> None:
    registered(app, "hourly")
    with signed_in(app, "ops") as client:
        csrf = csrf_of(client.get("/schedules").text)
        answer = client.post(target, data={"csrf": csrf, **form})
    assert answer.status_code == status, answer.text[:300]
    assert names in html.unescape(answer.text)
    assert not app.store.schedules(["hourly"])[0].paused
    assert app.store.ticks("hourly") == []
