"""The dashboard's foundation in a real browser: signing in (token and one-time link),
the overview with data, CSRF, roles, signing out, the theme toggle and the keyboard."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from browser_support import SECRET_TOKEN, Server, enqueue_off_the_loop
from playwright.sync_api import Browser, Page, expect

Shot = Callable[[Page, str], Path]
SignIn = Callable[[str], Page]


def test_sign_in_with_a_token_shows_the_overview_with_data(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("admin")
    expect(page.locator(".who .principal")).to_have_text("root")
    expect(page.locator(".who .badge.role")).to_have_text("admin")
    today = page.get_by_role("table", name="today by name")
    expect(today).to_contain_text("hello")
    expect(today).to_contain_text("nightly_report")
    expect(today).to_contain_text("reviewer")
    expect(today.locator("tr", has_text="reviewer")).to_contain_text("agent")
    runs = page.locator(".figure", has_text="runs today")
    expect(runs.locator(".value")).to_have_text("5")
    failed = page.locator(".figure", has_text="failed today")
    expect(failed.locator(".value")).to_have_text("1")
    assert (
        failed.locator("a")
        .get_attribute("href", timeout=5000)
        .startswith("/runs?state=FAILED&since=")
    )
    row = today.locator("tr", has_text="nightly_report")
    assert row.locator("a").first.get_attribute("href").startswith("/runs?name=nightly_report")
    expect(page.locator("svg.chart rect.bar").first).to_be_attached()
    screenshot(page, "overview")


def test_a_one_time_link_signs_in_once(browser: Browser, server: Server, screenshot: Shot) -> None:
    first = browser.new_context()
    try:
        page = first.new_page()
        page.goto(server.login_link)
        expect(page).to_have_url(server.page_url("/"))
        expect(page.locator(".who .principal")).to_have_text("root")
    finally:
        first.close()
    second = browser.new_context()
    try:
        page = second.new_page()
        answer = page.goto(server.login_link)
        assert answer is not None and answer.status == 403
        expect(page.locator("h1")).to_have_text("This login link does not work")
        screenshot(page, "link-used")
        page.goto(server.page_url("/"))
        expect(page).to_have_url(re.compile(r"/login\?next="))
    finally:
        second.close()


def test_a_wrong_token_is_refused_on_the_form(browser: Browser, server: Server) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.page_url("/login"))
        page.fill("#token", "rota_" + "0" * 32 + "_" + "A" * 43)
        page.click("button[type=submit]")
        expect(page.locator(".problem")).to_contain_text("That token was refused")
        expect(page).to_have_url(server.page_url("/login"))
    finally:
        context.close()


def test_a_post_needs_the_csrf_token_and_sign_out_ends_the_session(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    refused = page.request.post(server.page_url("/logout"), max_redirects=0)
    assert refused.status == 403
    assert "security token" in refused.text()
    page.reload()
    expect(page.locator(".who .principal")).to_have_text("watcher")  # still signed in
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(server.page_url("/login"))
    screenshot(page, "signed-out")
    page.goto(server.page_url("/audit"))
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faudit"))


def test_the_theme_toggle_is_remembered(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("[data-theme-toggle]")
    after = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert after != before
    theme = page.evaluate("document.documentElement.getAttribute('data-theme')")
    assert theme in ("dark", "light")
    page.reload()
    assert page.evaluate("document.documentElement.getAttribute('data-theme')") == theme
    screenshot(page, theme)


def test_keyboard_g_u_goes_to_audit_and_j_selects_rows(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    page.keyboard.press("g")
    page.keyboard.press("u")
    expect(page).to_have_url(server.page_url("/audit"))
    expect(page.locator(".verify.ok")).to_contain_text("Chain verified")
    expect(page.get_by_role("table", name="audit records")).to_contain_text("session.opened")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator("table[data-nav-table] tbody tr.selected")).to_have_count(1)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "actor"
    page.keyboard.press("Escape")
    page.locator("body").click()
    page.keyboard.press("?")
    expect(page.locator("dialog#keys")).to_be_visible()
    screenshot(page, "audit-keys")
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    page.keyboard.press("o")
    expect(page).to_have_url(server.page_url("/"))


def test_a_bad_query_is_a_400_page_naming_the_parameter(signed_in: SignIn, server: Server) -> None:
    page = signed_in("viewer")
    answer = page.goto(server.page_url("/audit?since=yesterday"))
    assert answer is not None and answer.status == 400
    expect(page.locator(".message")).to_contain_text("query parameter since must be")


def test_no_page_or_asset_holds_a_token(signed_in: SignIn, server: Server) -> None:
    page = signed_in("admin")
    seen: list[str] = []
    for path in ("/", "/audit", "/login", "/audit?since=bad"):
        seen.append(page.request.get(server.page_url(path)).text())
        page.goto(server.page_url(path))
        seen.append(page.content())
    for asset in ("/static/dashboard.js", "/static/dashboard.css", "/static/vendor/htmx.min.js"):
        seen.append(page.request.get(server.page_url(asset)).text())
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["rota_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    for text in seen:
        assert not SECRET_TOKEN.search(text)
        assert all(token not in text for token in server.tokens.values())
        assert session["value"] not in text


def test_the_overview_updates_live_when_a_run_is_queued(
    signed_in: SignIn, server: Server, screenshot: Shot
) -> None:
    page = signed_in("viewer")
    queued = page.locator(".figure", has_text="queued").first.locator(".value")
    expect(queued).to_have_text("0")
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    enqueue_off_the_loop(server, "hello")
    expect(queued).to_have_text("1", timeout=15_000)
    assert page.evaluate("window.__same_page") is True
    screenshot(page, "live")
