"""The Runs list and the Run page in a real browser, on SQLite and PostgreSQL: an escalated
agent run's trace tree with its tool calls, tokens and cost; a failed run's error and failed
step; filters and keyset pages; bulk cancel for an operator and its refusal for a viewer; a
long run's steps arriving as they scroll in; and pages that follow a run's state live."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dashboard_app
import pytest
from browser_support import Server, _off_the_loop, enqueue_off_the_loop
from playwright.sync_api import Page, expect

from rota.model import RunFilter

Shot = Callable[[Page, str], Path]
SignIn = Callable[[str], Page]
GREETINGS = 55  # more than a page of runs (50)


@dataclass(frozen=True)
class Seeded:
    job: str  # the intake run that escalated
    agent: str  # the triager run it escalated to, whose refund root approved
    failed: str  # an ingest run whose step "load" failed
    long: str  # an ingest run of 400 steps


@pytest.fixture(scope="module")
def seeded(server: Server) -> Seeded:
    """This module's runs, added to the served database (its app defines them)."""

    def seed() -> Seeded:
        app = dashboard_app.build(server.database_url)
        try:
            job = app.run_now("intake", {"customer_id": "acme", "ask": "refund 12.00"})
            failed = app.run_now("ingest", {"fail": True})
            long = app.run_now("ingest", {"parts": 399})
            for n in range(GREETINGS):
                app.run_now("hello", {"n": n})
            app.drain()
            (request,) = app.store.approvals()
            app.store.decide_approval(request.id, "root", True, "ok", app.clock.now(), via="seed")
            app.drain()
            return Seeded(job.id, job.result()["run_id"], failed.id, long.id)
        finally:
            app.close()

    return _off_the_loop(seed)


def change_off_the_loop(server: Server, run_id: str, verb: str) -> None:
    """Cancel or retry a run in the served database, as another process would."""

    def change() -> None:
        app = dashboard_app.build(server.database_url)
        try:
            act = app.store.cancel if verb == "cancel" else app.store.retry
            act(run_id, app.clock.now())
        finally:
            app.close()

    _off_the_loop(change)


def run_ids(server: Server, **filters: tuple[str, ...]) -> list[str]:
    def read() -> list[str]:
        app = dashboard_app.build(server.database_url)
        try:
            return [r.id for r in app.store.list_runs(RunFilter(limit=500, **filters))]
        finally:
            app.close()

    return _off_the_loop(read)


@pytest.fixture
def viewer_page(signed_in: SignIn, seeded: Seeded) -> Iterator[Page]:
    yield signed_in("viewer")


def test_an_escalated_agent_run_shows_its_trace_tree_tokens_and_cost(
    signed_in: SignIn, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    page.goto(server.page_url(f"/runs/{seeded.agent}"))
    expect(page.locator("h1")).to_contain_text("triager")
    expect(page.locator("h1 .run-state")).to_have_text("succeeded")
    trace = page.get_by_role("region", name="agent trace")
    agent = trace.locator("details.trace-agent > summary")
    expect(agent).to_contain_text("4 model calls")
    expect(agent).to_contain_text(re.compile(r"[\d,]+ in · [\d,]+ out"))
    expect(agent).to_contain_text(re.compile(r"\$0\.\d{4}"))
    calls = trace.locator("details.trace-call")
    expect(calls).to_have_count(4)
    for call in calls.all():  # each model call shows its own tokens and cost
        expect(call.locator("summary").first).to_contain_text(re.compile(r" in · .* \$0\.\d+"))
    calls.nth(0).locator("summary").first.click()
    lookup = calls.nth(0).locator("details.trace-tool")
    expect(lookup).to_contain_text("tool lookup")
    expect(lookup).to_contain_text("plan of acme: gold")
    expect(lookup).to_contain_text('"customer_id": "acme"')
    calls.nth(1).locator("summary").first.click()
    expect(calls.nth(1).locator("details.trace-tool")).to_contain_text("denied")
    calls.nth(2).locator("summary").first.click()
    refund = calls.nth(2).locator("details.trace-tool")
    expect(refund).to_contain_text("tool refund")
    expect(refund).to_contain_text("approved by root")
    chain = page.get_by_role("region", name="escalation chain")
    expect(chain.get_by_role("link", name="intake")).to_have_attribute(
        "href", f"/runs/{seeded.job}"
    )
    expect(chain).to_contain_text("root: ")
    expect(page.locator(".run-head")).to_contain_text("started by escalation, as svc-agent")
    screenshot(page, "agent-run")
    chain.get_by_role("link", name="intake").click()
    expect(page).to_have_url(server.page_url(f"/runs/{seeded.job}"))
    expect(page.get_by_role("region", name="escalation chain")).to_contain_text("triager")


def test_replay_shows_the_outcome_for_an_operator(
    signed_in: SignIn, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    page = signed_in("operator")
    page.goto(server.page_url(f"/runs/{seeded.agent}"))
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-result")).to_contain_text("Identical")
    screenshot(page, "replayed")


def test_a_failed_run_shows_its_error_and_the_failed_step(
    viewer_page: Page, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    page = viewer_page
    page.goto(server.page_url(f"/runs/{seeded.failed}"))
    failure = page.get_by_role("alert", name="failure")
    expect(failure).to_be_visible()
    expect(failure.locator("h2")).to_have_text("Failed at step load")
    expect(failure).to_contain_text("constraint violated: duplicate key acme")
    failed_row = page.locator("table.waterfall tr", has_text="load")
    expect(failed_row.locator(".badge")).to_have_text("failed")
    screenshot(page, "failed-run")


def test_the_runs_list_filters_and_paginates(
    viewer_page: Page, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    page = viewer_page
    page.goto(server.page_url("/runs"))
    rows = page.locator("table[aria-label=runs] tbody tr")
    expect(rows).to_have_count(50)
    screenshot(page, "list")
    page.select_option("select[name=state]", "FAILED")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"state=FAILED"))
    failed = run_ids(server, states=("FAILED",))
    expect(rows).to_have_count(len(failed))
    assert [r.get_attribute("data-run") for r in rows.all()] == failed
    page.fill("input[name=q]", "duplicate key")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ingest")

    page.goto(server.page_url("/runs?name=hello"))
    first = [r.get_attribute("data-run") for r in rows.all()]
    assert len(first) == 50
    page.get_by_role("link", name="older »").click()
    expect(rows).to_have_count(run_ids_count(server, "hello") - 50)
    second = [r.get_attribute("data-run") for r in rows.all()]
    assert first + second == run_ids(server, names=("hello",))
    page.get_by_role("link", name="« newest").click()
    expect(rows).to_have_count(50)


def run_ids_count(server: Server, name: str) -> int:
    return len(run_ids(server, names=(name,)))


def test_bulk_cancel_works_for_an_operator(
    signed_in: SignIn, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    queued = [enqueue_off_the_loop(server, "hello") for _ in range(2)]
    page = signed_in("operator")
    page.goto(server.page_url("/runs?state=ENQUEUED&name=hello"))
    for run_id in queued:
        page.locator(f"#pick-{run_id}").check()
    page.get_by_role("button", name="Cancel ticked").click()
    expect(page.locator("h1")).to_have_text("Cancelled 2 of 2 runs")
    screenshot(page, "bulk-cancelled")
    page.get_by_role("link", name="Back to the runs").click()
    expect(page).to_have_url(server.page_url("/runs?state=ENQUEUED&name=hello"))
    for run_id in queued:
        expect(page.locator(f"tr[data-run='{run_id}']")).to_have_count(0)
    assert set(queued) <= set(run_ids(server, states=("CANCELLED",)))


def test_a_viewer_is_refused_an_operator_action(
    viewer_page: Page, server: Server, screenshot: Shot
) -> None:
    run_id = enqueue_off_the_loop(server, "hello")
    page = viewer_page
    page.goto(server.page_url("/runs?state=ENQUEUED"))
    cancel = page.get_by_role("button", name="Cancel ticked")
    expect(cancel).to_be_disabled()
    page.locator(f"#pick-{run_id}").check()
    cancel.evaluate("button => button.removeAttribute('disabled')")  # as a crafted page would
    cancel.click()
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator(".message")).to_contain_text("watcher lacks the role 'operator'")
    screenshot(page, "viewer-refused")
    assert run_id in run_ids(server, states=("ENQUEUED",))


def test_a_long_run_loads_its_steps_as_they_scroll_in(
    viewer_page: Page, server: Server, seeded: Seeded, screenshot: Shot
) -> None:
    page = viewer_page
    page.goto(server.page_url(f"/runs/{seeded.long}"))
    rows = page.locator("table.waterfall tr.bar-row")
    expect(rows).to_have_count(100)
    for expected in (300, 400):  # pages of 200 after the first 100
        page.locator("table.waterfall tr.more").scroll_into_view_if_needed()
        expect(rows).to_have_count(expected)
    expect(page.locator("table.waterfall tr.more")).to_have_count(0)
    expect(rows.last).to_contain_text("parse398")
    screenshot(page, "long-run")


def test_an_open_run_page_and_list_follow_the_run_without_a_reload(
    viewer_page: Page, server: Server
) -> None:
    run_id = enqueue_off_the_loop(server, "hello")
    page = viewer_page
    page.goto(server.page_url(f"/runs/{run_id}"))
    expect(page.locator("h1 .run-state")).to_have_text("enqueued")
    page.evaluate("window.rotaSamePage = true")  # gone if the page reloads
    change_off_the_loop(server, run_id, "cancel")
    expect(page.locator("h1 .run-state")).to_have_text("cancelled", timeout=15_000)
    assert page.evaluate("window.rotaSamePage") is True

    page.goto(server.page_url("/runs?name=hello"))
    page.evaluate("window.rotaSamePage = true")
    # Made at once, perhaps before the page's event stream is open: the stream starts
    # from when the page was rendered, so the page still hears of it.
    fresh = enqueue_off_the_loop(server, "hello")
    expect(page.locator(f"tr[data-run='{fresh}'] .run-state")).to_have_text(
        "enqueued", timeout=15_000
    )
    change_off_the_loop(server, fresh, "cancel")
    expect(page.locator(f"tr[data-run='{fresh}'] .run-state")).to_have_text(
        "cancelled", timeout=15_000
    )
    assert page.evaluate("window.rotaSamePage") is True
