"""The dashboard's pages through Starlette's TestClient, on SQLite and PostgreSQL: bad query
strings and forms are 4xx pages naming the parameter (never a 5xx), the overview's figures
and links, the audit page's filters and keyset pages, and the navigation registry."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

from rota import App, FakeClock
from rota.api import create_api
from rota.api.dashboard import PAGE_MODULES, nav_entries
from rota.api.dashboard.charts import bar_chart, line_chart
from rota.api.dashboard.figures import overview_figures, percentile
from rota.api.dashboard.render import NavEntry, duration, money
from rota.identity import admin, tokens

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = App(database_url, clock=FakeClock(START))
    built.principal("watcher", kind="user", roles=["viewer"])

    @built.job
    def hello(ctx: Any, payload: Any) -> str:
        return "hi"

    @built.job(retries=0)
    def boom(ctx: Any, payload: Any) -> None:
        raise RuntimeError("no")

    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    token = tokens.issue(app.store, "watcher", admin.Actor("root", "human")).token
    with TestClient(create_api(app), follow_redirects=False) as signed:
        form = signed.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        assert signed.post("/login", data={"csrf": csrf[1], "token": token}).status_code == 303
        yield signed


@pytest.mark.parametrize(
    ("target", "names"),
    [
        ("/audit?since=yesterday", "query parameter since must be an ISO 8601 time"),
        ("/audit?until=%00", "query parameter until must be"),
        ("/audit?action=DROP%20TABLE", "query parameter action must be an action such as"),
        ("/audit?before=-1", "query parameter before must be the position"),
        ("/audit?before=" + "9" * 30, "query parameter before must be"),
        ("/audit?actor=" + "x" * 500, "query parameter actor must be text of at most 200"),
        ("/audit?page=2", "unknown query parameter 'page'"),
        ("/audit?actor=a&actor=b", "query parameter actor is given more than once"),
        ("/?since=today", "unknown query parameter 'since'"),
        ("/login?next=//evil.example", "query parameter next must be a path on this server"),
        ("/login?next=https://evil.example", "query parameter next must be a path"),
        ("/login/once?code=%00", "query parameter code must be the code of a login link"),
        ("/live?last_event_id=nope", "query parameter last_event_id must be"),
    ],
)
def test_a_bad_query_is_a_400_page_naming_the_parameter(
    client: TestClient, target: str, names: str
) -> None:
    answer = client.get(target)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert names in html.unescape(answer.text)
    assert "Traceback" not in answer.text


def test_empty_filter_fields_mean_no_filter(client: TestClient) -> None:
    answer = client.get("/audit?actor=&action=&since=&until=")
    assert answer.status_code == 200
    assert "Chain verified" in answer.text


def test_a_bad_form_is_refused_and_signs_no_one_in(app: App, client: TestClient) -> None:
    before = app.store.meta_prefixed("dashboard.session.")
    for body, kind, status in [
        (b'{"token": "x"}', "application/json", 415),
        (b"token=a&token=b", "application/x-www-form-urlencoded", 400),
        (b"token=%00", "application/x-www-form-urlencoded", 400),
        (b"token=%ff", "application/x-www-form-urlencoded", 400),
        (b"t=" + b"x" * 70_000, "application/x-www-form-urlencoded", 413),
    ]:
        answer = client.post("/login", content=body, headers={"content-type": kind})
        assert answer.status_code == status, (body[:30], answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html")
    assert app.store.meta_prefixed("dashboard.session.") == before


def test_the_overview_counts_today_and_links_to_the_runs(app: App, client: TestClient) -> None:
    for _ in range(3):
        app.run_now("hello", {})
    app.run_now("boom", {})
    app.drain()
    figures = overview_figures(app)
    assert (figures.runs_today, figures.failed_today, figures.finished_today) == (4, 1, 4)
    assert figures.failure_rate == 0.25
    assert sum(v for _, v in figures.per_minute) == 4
    assert {n.name: (n.runs, n.failed) for n in figures.names} == {"hello": (3, 0), "boom": (1, 1)}
    page = html.unescape(client.get("/").text)
    since = "since=2027-01-15T00%3A00%3A00.000Z"  # midnight UTC, today
    assert f"/runs?name=boom&state=FAILED&{since}" in page
    assert f"/runs?state=FAILED&{since}" in page
    assert "/runs?state=ENQUEUED" in page
    assert "25.0%" in page


def test_an_empty_overview_says_what_to_run(client: TestClient) -> None:
    page = html.unescape(client.get("/").text)
    assert "No runs yet today." in page
    assert "rota run boom" in page


def test_the_audit_page_filters_and_pages_by_seq(app: App, client: TestClient) -> None:
    for n in range(60):
        app.store.audit("bot", f"test.thing_{n % 2}", subject=f"s{n}", on_behalf_of="alice")
    first = html.unescape(client.get("/audit?actor=alice").text)
    assert first.count("<td>bot</td>") == 50
    assert "s59" in first and "s10" in first and "s9<" not in first
    older = re.search(r'href="(/audit\?[^"]+)" rel="next"', first)
    assert older is not None and "actor=alice" in older[1] and "before=" in older[1]
    second = html.unescape(client.get(older[1]).text)
    assert second.count("<td>bot</td>") == 10
    assert 'rel="next"' not in second and 'rel="first"' in second
    odd = html.unescape(client.get("/audit?action=test.thing_1").text)
    assert odd.count("<td>bot</td>") == 30
    prefix = html.unescape(client.get("/audit?action=test.*&actor=alice").text)
    assert prefix.count("<td>bot</td>") == 50
    later = html.unescape(client.get("/audit?since=2999-01-01T00:00:00Z").text)
    assert "No audit record matches these filters." in later


def test_the_audit_page_shows_a_broken_chain(app: App, client: TestClient) -> None:
    app.store.audit("bot", "test.thing", subject="kept")
    with app.store.tx() as conn:
        conn.execute("UPDATE rota_audit SET subject = 'edited' WHERE subject = 'kept'")
    page = client.get("/audit").text
    assert "The chain does not verify" in page


def test_the_navigation_is_built_from_the_page_modules() -> None:
    entries = nav_entries()
    assert [(e.title, e.path, e.key) for e in entries][:1] == [("Overview", "/", "o")]
    assert ("Audit", "/audit", "u") in [(e.title, e.path, e.key) for e in entries]

    class Extra:
        NAV = NavEntry("Extra", "/extra", "x", 1)

    mixed = nav_entries([*PAGE_MODULES, Extra])  # type: ignore[list-item]
    assert [e.title for e in mixed][:2] == ["Overview", "Extra"]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50.0, 95.0)


def test_charts_escape_their_labels_and_say_when_empty() -> None:
    svg = bar_chart([("<b>", 2.0), ("b", 0.0)], label='a "chart"')
    assert "<b>" not in svg and "&lt;b&gt;: 2" in svg
    assert 'aria-label="a &quot;chart&quot;"' in svg
    assert svg.count('class="bar"') == 2
    assert "no data" in bar_chart([], label="x") and "no data" in line_chart([], label="x")
    assert line_chart([("a", 1.0), ("b", 3.5)], label="x").count('class="dot"') == 2


def test_money_and_durations_read_well() -> None:
    assert [money(None), money(0), money(Decimal("0.0042")), money(1234.5)] == [
        "-",
        "$0.00",
        "$0.0042",
        "$1,234.50",
    ]
    assert [duration(None), duration(0.85), duration(4.25), duration(185), duration(7800)] == [
        "-",
        "850ms",
        "4.2s",
        "3m 05s",
        "2h 10m",
    ]
    assert duration(3 * 86_400 + 4 * 3600) == "3d 4h"
