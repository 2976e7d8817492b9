"""The HTTP API's schedules, audit verify, principals, tokens, cost and budgets routes, on
SQLite and PostgreSQL: each answer's shape, the role each needs, 404s that name what was not
found, and 400s for malformed input."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from rota import App, FakeClock, every
from rota.api import create_api
from rota.cost.plans import load_plans
from rota.errors import ConfigError
from rota.identity import admin, tokens
from rota.scheduler import Scheduler
from rota.storage.audit import PRINCIPAL_CHANGED, SCHEDULE_CHANGED, SCOPE_CHANGED
from rota.storage.usage import Hold

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Api:
    app: App
    clock: FakeClock
    client: TestClient
    tokens: dict[str, str]

    def call(self, method: str, path: str, who: str | None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        content = None if body is None else json.dumps(body)
        return self.client.request(method, path, headers=headers, content=content)


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    clock = FakeClock(START)
    app = App(database_url, clock=clock)
    app.principal("root", kind="user", roles=["admin"])
    app.principal("op", roles=["operator"])
    app.principal("view", roles=["viewer"])
    app.budget(agent="helper", usd=5, per="day")

    @app.job(schedule=every("1m"), misfire="skip", misfire_grace="30s", overlap="allow")
    def minutely(ctx: Any) -> None:
        return None

    @app.job(schedule=every("5s"))
    def fast(ctx: Any) -> None:
        return None

    @app.job
    def report(ctx: Any, payload: Any) -> str:
        return "done"

    app.store.schema_version()  # opens the store: declared principals are synced
    made = {
        who: tokens.issue(app.store, who, admin.Actor("test", "human")).token
        for who in ("root", "op", "view")
    }
    try:
        with TestClient(create_api(app)) as client:
            yield Api(app, clock, client, made)
    finally:
        app.close()


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    return str(body["message"])


# -- schedules -------------------------------------------------------------------------------


def test_schedules_list_with_next_fire_times_and_pause_and_resume(api: Api) -> None:
    listed = api.call("GET", "/api/schedules", "view").json()
    items = {i["name"]: i for i in listed["items"]}
    assert set(items) == {"minutely", "fast"} and listed["next_cursor"] is None
    assert items["minutely"]["state"] == "unregistered"
    fires = items["minutely"]["next_fires_utc"]
    assert len(fires) == 3 and fires == sorted(fires) and fires[0] > "2026-03-01T12:00"
    assert items["minutely"]["trigger"] == "every 1m" and items["minutely"]["job"] == "minutely"

    Scheduler(api.app).sync()
    paused = api.call("POST", "/api/schedules/minutely/pause", "op")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused" and paused.json()["next_fires"] == []
    assert api.app.store.schedules(["minutely"])[0].paused
    resumed = api.call("POST", "/api/schedules/minutely/resume", "op").json()
    assert resumed["state"] == "active" and len(resumed["next_fires"]) == 3
    assert not api.app.store.schedules(["minutely"])[0].paused
    changes = api.app.store.audit_records(action=SCHEDULE_CHANGED)
    assert [(r.actor, r.subject, r.detail) for r in changes] == [
        ("op", "minutely", {"paused": False}),
        ("op", "minutely", {"paused": True}),
    ]


def test_schedule_actions_need_an_operator_and_a_known_name(api: Api) -> None:
    assert "not registered yet" in error_of(
        api.call("POST", "/api/schedules/minutely/pause", "op"), 409
    )
    Scheduler(api.app).sync()
    message = error_of(api.call("POST", "/api/schedules/minutely/pause", "view"), 403)
    assert "operator" in message
    assert not api.app.store.schedules(["minutely"])[0].paused
    error_of(api.call("GET", "/api/schedules", None), 401)
    assert "'nightly'" in error_of(api.call("POST", "/api/schedules/nightly/pause", "op"), 404)
    assert "'nightly'" in error_of(api.call("GET", "/api/schedules/nightly/ticks", "view"), 404)
    body = {"start": "2026-01-01", "end": "2026-01-02"}
    assert "'nightly'" in error_of(
        api.call("POST", "/api/schedules/nightly/backfill", "op", body), 404
    )


def test_schedules_page_by_cursor(api: Api) -> None:
    first = api.call("GET", "/api/schedules?limit=1", "view").json()
    assert [i["name"] for i in first["items"]] == ["fast"] and first["next_cursor"]
    second = api.call("GET", f"/api/schedules?limit=1&cursor={first['next_cursor']}", "view")
    assert [i["name"] for i in second.json()["items"]] == ["minutely"]
    assert second.json()["next_cursor"] is None
    assert "cursor" in error_of(api.call("GET", "/api/schedules?cursor=bm9wZQ", "view"), 400)


def test_ticks_show_skipped_ones_with_their_reason(api: Api) -> None:
    scheduler = Scheduler(api.app)
    scheduler.sync()
    scheduler.tick()
    api.clock.advance(11 * 60 + 45)  # ticks 12:01 ... 12:11 missed, past the grace: skipped
    scheduler.tick()

    skipped = api.call("GET", "/api/schedules/minutely/ticks?outcome=skipped", "view").json()
    assert skipped["items"] and {t["outcome"] for t in skipped["items"]} == {"skipped"}
    assert {t["reason"] for t in skipped["items"]} == {"misfire"}
    assert sum(t["ticks"] for t in skipped["items"]) == 11
    every_tick = api.call("GET", "/api/schedules/minutely/ticks", "view").json()["items"]
    assert {t["outcome"] for t in every_tick} == {"enqueued", "skipped"}

    paged, cursor = [], ""
    while True:
        page = api.call("GET", f"/api/schedules/minutely/ticks?limit=1{cursor}", "view").json()
        paged += page["items"]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert paged == every_tick
    assert "outcome" in error_of(
        api.call("GET", "/api/schedules/minutely/ticks?outcome=maybe", "view"), 400
    )


def test_a_backfill_dry_run_previews_and_a_large_one_needs_confirming(api: Api) -> None:
    day = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    preview = api.call("POST", "/api/schedules/fast/backfill", "op", {**day, "dry_run": True})
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["fire_times"] == shown["to_enqueue"] == 17_280 and shown["enqueued"] == 0
    assert shown["needs_confirm"] is True and len(shown["preview"]) == 100
    assert shown["preview"][0] == {
        "id": "fast@2026-01-01T00:00:00+00:00",
        "fire_at": "2026-01-01T00:00:00.000Z",
    }
    message = error_of(api.call("POST", "/api/schedules/fast/backfill", "op", day), 409)
    assert "17,280 runs" in message and '"confirm": 17280' in message
    wrong = {**day, "confirm": 17_000}
    error_of(api.call("POST", "/api/schedules/fast/backfill", "op", wrong), 409)
    assert api.app.runs(names=["fast"]) == []  # nothing was enqueued by any of these

    error_of(api.call("POST", "/api/schedules/fast/backfill", "view", day), 403)
    ten_days = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-11T00:00:00Z"}
    assert "50,000" in error_of(
        api.call("POST", "/api/schedules/fast/backfill", "op", ten_days), 422
    )
    backwards = {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    assert "end" in error_of(api.call("POST", "/api/schedules/fast/backfill", "op", backwards), 400)
    assert "start" in error_of(
        api.call("POST", "/api/schedules/fast/backfill", "op", {**day, "start": "soon"}), 400
    )


def test_a_backfill_enqueues_only_fire_times_without_a_run(api: Api) -> None:
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:10:00Z"}
    done = api.call("POST", "/api/schedules/minutely/backfill", "op", window).json()
    assert done["enqueued"] == 10 and done["already_run"] == 0 and done["dry_run"] is False
    again = api.call("POST", "/api/schedules/minutely/backfill", "op", window).json()
    assert again["enqueued"] == 0 and again["already_run"] == 10 and again["to_enqueue"] == 0

    day = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "confirm": 1430}
    confirmed = api.call("POST", "/api/schedules/minutely/backfill", "op", day).json()
    assert confirmed["enqueued"] == 1430 and confirmed["already_run"] == 10
    runs = api.app.runs(names=["minutely"], limit=10_000)
    assert len(runs) == 1440
    (last, *_) = api.app.store.audit_records(action=SCHEDULE_CHANGED)
    assert last.actor == "op" and last.detail["enqueued"] == 1430


# -- audit -----------------------------------------------------------------------------------


def test_audit_verify_reports_an_intact_chain(api: Api) -> None:
    report = api.call("GET", "/api/audit/verify", "view").json()
    assert report["ok"] is True and report["problems"] == []
    assert report["checked"] >= 3 and report["head"]["seq"] == report["checked"]
    error_of(api.call("GET", "/api/audit/verify", None), 401)
    assert "audit" in error_of(api.call("GET", "/api/audit/verify?x=1", "view"), 400)


# -- principals ------------------------------------------------------------------------------


def test_principals_are_for_admins_only(api: Api) -> None:
    for who in ("op", "view"):
        error_of(api.call("GET", "/api/principals", who), 403)
        error_of(api.call("POST", "/api/principals", who, {"name": "svc-x"}), 403)
        error_of(api.call("POST", "/api/principals/op/disable", who), 403)
    assert api.app.store.principal("svc-x") is None
    assert not api.app.store.principal("op").disabled


def test_principals_add_grant_revoke_disable_enable(api: Api) -> None:
    listed = api.call("GET", "/api/principals", "root").json()
    assert [p["name"] for p in listed["items"]] == ["op", "root", "view"]
    added = api.call(
        "POST", "/api/principals", "root", {"name": "svc-billing", "scopes": ["billing:read"]}
    )
    assert added.status_code == 201, added.text
    assert added.json() == {
        "name": "svc-billing",
        "kind": "service",
        "scopes": ["billing:read"],
        "roles": [],
        "disabled": False,
    }
    error_of(api.call("POST", "/api/principals", "root", {"name": "svc-billing"}), 409)
    granted = api.call(
        "POST",
        "/api/principals/svc-billing/grant",
        "root",
        {"scopes": ["billing:write"], "roles": ["viewer"]},
    ).json()
    assert granted["scopes"] == ["billing:read", "billing:write"]
    assert granted["roles"] == ["viewer"]
    revoked = api.call(
        "POST", "/api/principals/svc-billing/revoke", "root", {"scopes": ["billing:read"]}
    ).json()
    assert revoked["scopes"] == ["billing:write"]
    disabled = api.call("POST", "/api/principals/svc-billing/disable", "root").json()
    assert disabled["disabled"] is True and api.app.store.principal("svc-billing").disabled
    enabled = api.call("POST", "/api/principals/svc-billing/enable", "root").json()
    assert enabled["disabled"] is False
    shown = api.call("GET", "/api/principals/svc-billing", "root").json()
    assert shown == {**enabled}

    records = api.app.store.audit_records(principal="root", limit=50)
    changes = [(r.action, r.subject, r.actor_kind) for r in records if r.subject == "svc-billing"]
    assert (PRINCIPAL_CHANGED, "svc-billing", "human") in changes
    assert (SCOPE_CHANGED, "svc-billing", "human") in changes


def test_principal_input_is_checked(api: Api) -> None:
    assert "'ghost'" in error_of(api.call("GET", "/api/principals/ghost", "root"), 404)
    grant = {"scopes": ["billing:read"]}
    assert "'ghost'" in error_of(
        api.call("POST", "/api/principals/ghost/grant", "root", grant), 404
    )
    assert "'ghost'" in error_of(api.call("POST", "/api/principals/ghost/disable", "root"), 404)
    assert "at least one scope or role" in error_of(
        api.call("POST", "/api/principals/op/grant", "root", {}), 400
    )
    assert "scope" in error_of(
        api.call("POST", "/api/principals/op/grant", "root", {"scopes": ["Not A Scope"]}), 400
    )
    assert "role" in error_of(
        api.call("POST", "/api/principals/op/grant", "root", {"roles": ["emperor"]}), 400
    )
    assert "name" in error_of(api.call("POST", "/api/principals", "root", {"name": "a b"}), 400)
    assert "kind" in error_of(
        api.call("POST", "/api/principals", "root", {"name": "ab", "kind": "robot"}), 400
    )
    assert "scopes" in error_of(
        api.call("POST", "/api/principals", "root", {"name": "ab", "scopes": "x"}), 400
    )
    assert api.app.store.principal("ab") is None
    assert api.app.store.principal("op").scopes == frozenset()


def test_principals_page_by_cursor(api: Api) -> None:
    names, cursor = [], ""
    while True:
        page = api.call("GET", f"/api/principals?limit=2{cursor}", "root").json()
        names += [p["name"] for p in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert names == ["op", "root", "view"]


# -- tokens ----------------------------------------------------------------------------------


def test_a_token_is_made_shown_once_and_revoked(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    made = api.call("POST", "/api/tokens", "root", {"principal": "view", "expires": "1d"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("rota_") and made.json()["principal"] == "view"
    assert made.json()["expires"] is not None
    api.tokens["new"] = token
    assert api.call("GET", "/api/whoami", "new").json()["name"] == "view"

    listed = api.call("GET", "/api/tokens?principal=view", "root")
    assert made.json()["id"] in [t["id"] for t in listed.json()["items"]]
    secret = token[len("rota_") + 33 :]  # the part after rota_<id>_
    assert len(secret) == 43 and secret not in listed.text
    assert secret not in caplog.text  # never logged

    revoked = api.call("POST", f"/api/tokens/{made.json()['id']}/revoke", "root")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    error_of(api.call("GET", "/api/whoami", "new"), 401)
    assert "already revoked" in error_of(
        api.call("POST", f"/api/tokens/{made.json()['id']}/revoke", "root"), 409
    )


def test_token_input_is_checked_and_needs_an_admin(api: Api) -> None:
    error_of(api.call("POST", "/api/tokens", "op", {"principal": "op"}), 403)
    error_of(api.call("GET", "/api/tokens", "view"), 403)
    assert "'ghost'" in error_of(
        api.call("POST", "/api/tokens", "root", {"principal": "ghost"}), 404
    )
    assert "expires" in error_of(
        api.call("POST", "/api/tokens", "root", {"principal": "op", "expires": "soon"}), 400
    )
    missing = "0" * 32
    assert missing in error_of(api.call("POST", f"/api/tokens/{missing}/revoke", "root"), 404)
    error_of(api.call("POST", "/api/tokens/not_an_id!/revoke", "root"), 400)
    before = {t.id for t in api.app.store.tokens()}
    assert len(before) == 3  # only the fixture's: no refused request made one


def test_a_token_for_firing_one_job_only(api: Api) -> None:
    made = api.call("POST", "/api/tokens", "root", {"fire": "report"})
    assert made.status_code == 201, made.text
    assert made.json()["principal"] == "fire-report" and made.json()["fire"] == "report"
    api.tokens["fire"] = made.json()["token"]
    error_of(api.call("GET", "/api/schedules", "fire"), 403)  # good for nothing else
    listed = api.call("GET", "/api/tokens?principal=fire-report", "root").json()["items"]
    assert [t["fire"] for t in listed] == ["report"]
    assert "'ghost'" in error_of(api.call("POST", "/api/tokens", "root", {"fire": "ghost"}), 404)
    error_of(api.call("POST", "/api/tokens", "root", {}), 400)


def test_tokens_page_by_cursor(api: Api) -> None:
    ids, cursor = [], ""
    while True:
        page = api.call("GET", f"/api/tokens?limit=2{cursor}", "root").json()
        ids += [t["id"] for t in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert ids == [t.id for t in api.app.store.tokens()]


# -- cost and budgets ------------------------------------------------------------------------

WINDOW = "since=2026-02-01T00:00:00Z&until=2026-03-02T00:00:00Z"


def test_the_cost_report_groups_the_runs_of_a_period(api: Api) -> None:
    api.app.run_now("report", {})
    api.app.drain()
    found = api.call("GET", f"/api/cost/report?{WINDOW}&by=workflow", "view").json()
    assert found["since"] == "2026-02-01T00:00:00Z" and found["until"] == "2026-03-02T00:00:00Z"
    (row,) = found["rows"]
    assert row["key"] == "report" and row["runs"] == 1 and row["total_usd"] == "0"
    empty = api.call("GET", "/api/cost/report?since=2026-01-01T00:00:00Z&until=2026-01-02", "view")
    assert empty.json()["rows"] == []
    assert "by" in error_of(api.call("GET", "/api/cost/report?by=colour", "view"), 400)
    assert "since" in error_of(api.call("GET", "/api/cost/report?since=whenever", "view"), 400)
    assert "before" in error_of(
        api.call("GET", "/api/cost/report?since=2026-03-02&until=2026-02-01", "view"), 400
    )
    error_of(api.call("GET", "/api/cost/report", None), 401)


def test_plans_compare_over_the_recorded_history(api: Api) -> None:
    api.app.run_now("report", {})
    api.app.drain()
    body = {
        "plans": [{"name": "api", "kind": "api"}],
        "since": "2026-02-01T00:00:00Z",
        "until": "2026-03-02T00:00:00Z",
    }
    result = api.call("POST", "/api/cost/compare", "view", body).json()
    assert result["runs"] == 1 and result["cheapest"] == "api"
    assert [p["name"] for p in result["plans"]] == ["api"]
    assert result["plans"][0]["total_usd"] == "0"


def test_plans_in_the_body_are_checked_like_a_plan_file(api: Api, tmp_path: Path) -> None:
    plans = [{"name": "x", "kind": "session", "session_usd_per_hour": -1}]
    file = tmp_path / "plans.json"
    file.write_text(json.dumps({"plans": plans}))
    with pytest.raises(ConfigError) as from_file:
        load_plans(file)
    message = error_of(api.call("POST", "/api/cost/compare", "view", {"plans": plans}), 400)
    assert message == str(from_file.value).replace(str(file), "the body")
    assert "unknown plan kind 'nope'" in error_of(
        api.call("POST", "/api/cost/compare", "view", {"plans": [{"name": "a", "kind": "nope"}]}),
        400,
    )
    assert "plans" in error_of(api.call("POST", "/api/cost/compare", "view", {}), 400)


def test_budgets_show_limit_spent_and_held_in_the_current_period(api: Api) -> None:
    (budget,) = api.app.budgets
    charge = budget.charge(api.clock.now())
    now = api.clock.now()
    hold = Hold("run-1", "step-1", 2 * 10**12, 100, 1, now, now + 600)  # $2 in flight
    assert api.app.store.reserve_budgets([charge], hold, now) is None

    found = api.call("GET", "/api/budgets", "view").json()
    (item,) = found["items"]
    assert item["key"] == "agent:helper" and item["per"] == "day"
    assert item["period"] == "2026-03-01" and item["period_start"] == "2026-03-01T00:00:00.000Z"
    assert item["limit"] == {"usd": "5", "tokens": None, "requests": None}
    assert item["spent"] == {"usd": "0", "tokens": 0, "requests": 0}
    assert item["held"] == {"usd": "2", "tokens": 100, "requests": 1}
    error_of(api.call("GET", "/api/budgets", None), 401)
