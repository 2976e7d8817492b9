"""The Approvals inbox in a real browser, on SQLite and PostgreSQL, with a `rota worker`
running the runs: a new request appears live, approving it resumes the run, and both the
run page and another person's inbox follow without a reload; a viewer sees the request
read-only and its approve is refused by the server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dashboard_app
import pytest
from browser_support import HERE, ROTA, Server, _off_the_loop
from playwright.sync_api import Page, expect

Shot = Callable[[Page, str], Path]
SignIn = Callable[[str], Page]
LIVE = 20_000  # ms: the worker's poll, the stream's tick and the page's refresh


@pytest.fixture(scope="module")
def worker(server: Server) -> Iterator[None]:
    """`rota worker` on the served database: it runs the triager to its approval, and on
    after the decision."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop("ROTA_APP", None)
    command = [str(ROTA), "--database-url", server.database_url, "--app", "dashboard_app:app"]
    process = subprocess.Popen(
        [*command, "worker", "--poll", "0.2", "--concurrency", "2", "--grace", "1"],
        cwd=HERE,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask_for_a_refund(server: Server) -> str:
    """Enqueue a triager run, which will ask to refund acme; its id."""

    def enqueue() -> str:
        app = dashboard_app.build(server.database_url)
        try:
            return app.run_now("triager", "acme asks for a refund of 12.00").id
        finally:
            app.close()

    return _off_the_loop(enqueue)


def open_live(page: Page, url: str) -> None:
    """Go to `url` and wait until its event stream answers: changes from then on reach it
    (the stream starts when it is opened, so one made between the page's render and that
    moment would not)."""
    with page.expect_response(lambda r: "/live" in r.url, timeout=LIVE):
        page.goto(url)


def api_state(page: Page, server: Server, run_id: str) -> str:
    headers = {"Authorization": f"Bearer {server.tokens['admin']}"}
    answer = page.request.get(server.page_url(f"/api/runs/{run_id}"), headers=headers)
    assert answer.ok
    state: str = answer.json()["state"]
    return state


def test_approving_in_the_inbox_resumes_the_run_and_pages_follow_live(
    worker: None, signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    inbox = signed_in("viewer")
    open_live(inbox, server.page_url("/approvals"))
    inbox.evaluate("window.__same_page = true")  # gone if the page reloads
    run_id = ask_for_a_refund(server)
    card = inbox.locator("article.approval", has=inbox.locator(f'a[href="/runs/{run_id}"]'))
    expect(card).to_be_visible(timeout=LIVE)  # arrived over the event stream
    expect(card).to_contain_text("Allow agent 'triager' to call refund(")
    expect(card).to_contain_text("May decide: approver:finance (or admins)")
    expect(card.locator(".cost")).to_contain_text("3 model call(s)")
    expect(card.locator(".read-only")).to_be_visible()  # a viewer may not decide
    assert inbox.evaluate("window.__same_page") is True

    run_page = inbox.context.new_page()
    open_live(run_page, server.page_url(f"/runs/{run_id}"))
    expect(run_page.locator("h1 .run-state")).to_have_text("waiting")
    run_page.evaluate("window.__same_page = true")

    approver = signed_in("admin")
    approver.goto(server.page_url("/approvals"))
    mine = approver.locator("article.approval", has=approver.locator(f'a[href="/runs/{run_id}"]'))
    mine.locator("textarea").fill("refund confirmed with acme")
    screenshot(approver, "inbox-before-approving")
    mine.get_by_role("button", name="Approve").click()
    expect(approver).to_have_url(server.page_url("/approvals"))
    expect(mine).to_have_count(0)

    expect(run_page.locator("h1 .run-state")).to_have_text("succeeded", timeout=LIVE)
    assert run_page.evaluate("window.__same_page") is True
    assert api_state(inbox, server, run_id) == "SUCCEEDED"
    screenshot(run_page, "run-resumed")

    expect(card).to_have_count(0, timeout=LIVE)
    history = inbox.get_by_role("table", name="approval history")
    row = history.locator("tr", has=inbox.locator(f'a[href="/runs/{run_id}"]'))
    expect(row).to_contain_text("approved")
    expect(row).to_contain_text("root")
    expect(row).to_contain_text("refund confirmed with acme")
    assert inbox.evaluate("window.__same_page") is True
    screenshot(inbox, "inbox-history")


def test_a_viewer_sees_the_request_read_only_and_its_approve_is_refused(
    worker: None, signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    open_live(page, server.page_url("/approvals"))
    run_id = ask_for_a_refund(server)
    card = page.locator("article.approval", has=page.locator(f'a[href="/runs/{run_id}"]'))
    expect(card).to_be_visible(timeout=LIVE)
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    expect(card.locator(".read-only")).to_contain_text("watcher may not decide this request")
    approval_id = card.get_attribute("data-approval")
    csrf = page.locator(".who input[name=csrf]").input_value()
    # Post the decision as a forged form would, with this session's valid CSRF token.
    page.evaluate(
        """([action, csrf]) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            for (const [name, value] of [["csrf", csrf], ["comment", "let me"]]) {
                const field = document.createElement("input");
                field.type = "hidden"; field.name = name; field.value = value;
                form.appendChild(field);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
        [f"/approvals/{approval_id}/approve", csrf],
    )
    expect(page.locator("h1")).to_have_text("Refused")
    expect(page.locator(".message")).to_contain_text("watcher' is not an approver of it")
    screenshot(page, "viewer-refused")
    page.goto(server.page_url("/approvals"))
    expect(card).to_be_visible()  # still pending
    assert api_state(page, server, run_id) == "WAITING"
