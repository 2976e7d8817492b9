"""Browser tests: Debian's Chromium, headless, driven by Playwright's Python package against a
real `rota serve` on a free loopback port, on SQLite and on PostgreSQL.

Fixtures for every page's tests:
- `server`: a seeded database (dashboard_app.seed) served by `rota serve`, one per module and
  database; `server.tokens[role]` is an API token of a user holding that role, and
  `server.login_link` the one-time link the server printed.
- `signed_in(role)`: a new browser page, signed in with that role's token through /login.
- `screenshot(page, name)`: saves test-artifacts/screenshots/<test>-<name>.png.

Playwright's own browser download is never used: a missing /usr/bin/chromium skips these
tests, or fails them under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import psycopg
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # dashboard_app, for seeding in this process

import dashboard_app  # noqa: E402

from rota.identity import admin, tokens  # noqa: E402

ROOT = HERE.parents[1]
ROTA = Path(sys.executable).parent / "rota"
CHROMIUM = Path(os.environ.get("ROTA_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PG_URL = os.environ.get("ROTA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T = TypeVar("T")
SECRET_TOKEN = re.compile(r"rota_[0-9a-f]{32}_[A-Za-z0-9_\-]{43}")

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]


def _unavailable(why: str) -> None:
    message = f"browser tests need {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " -- CI=true, so this is a failure (.ci/run installs chromium)")
    pytest.skip(message)


# Module scope, not session: while Playwright's sync API is open it leaves its event loop
# running on the main thread, so any later non-browser test that calls asyncio.run() in the
# same pytest session would fail. Closing it after each browser module keeps `make test` one run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        _unavailable("the playwright package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _unavailable(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Server:
    url: str
    database_url: str
    tokens: dict[str, str]
    login_link: str
    output: list[str] = field(default_factory=list)

    def page_url(self, path: str) -> str:
        return self.url + path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for one module's server: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('browser') / 'rota.db'}"
        return
    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        if os.environ.get("ROTA_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at {PG_URL} is required: {exc}")
        pytest.skip(f"PostgreSQL tests need a server at {PG_URL}: {exc}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[Server]:
    """`rota serve` on a seeded database, on a free port, stopped afterwards."""
    issued = _off_the_loop(lambda: _seed(database))
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    environ.pop("ROTA_APP", None)
    command = [str(ROTA), "--database-url", database, "--app", "dashboard_app:app", "serve"]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        cwd=HERE,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output: list[str] = []
        url = _wait_for(process, output, r"rota API on (http://\S+)")
        link = _wait_for(process, output, r"(http://\S+/login/once\?code=\S+)")
        yield Server(url, database, issued, link, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _seed(database: str) -> dict[str, str]:
    """Seed the database; an API token for each role's user."""
    seeded = dashboard_app.build(database)
    try:
        dashboard_app.seed(seeded)
        made_by = admin.Actor("root", "human")
        return {
            role: tokens.issue(seeded.store, name, made_by).token
            for role, name in dashboard_app.PRINCIPALS.items()
        }
    finally:
        seeded.close()


def enqueue_off_the_loop(server: Server, name: str) -> str:
    """Enqueue a run of `name` in the server's database (no worker runs it); its id."""

    def enqueue() -> str:
        app = dashboard_app.build(server.database_url)
        try:
            return app.run_now(name, {}).id
        finally:
            app.close()

    return _off_the_loop(enqueue)


def _off_the_loop(work: Callable[[], T]) -> T:
    """`work()` on a thread of its own: Playwright's sync API keeps an event loop running
    on this one, and rota's drain() starts its own."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _wait_for(process: subprocess.Popen[str], output: list[str], pattern: str) -> str:
    """The first group of the first output line matching `pattern`, waited for on a thread so
    that a silent process cannot hang the test."""
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match.group(1))
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(60), f"rota serve printed no line matching {pattern!r}: {output}"
    assert found, f"rota serve ended without printing {pattern!r}: {output}"
    return found[0]


@pytest.fixture
def signed_in(browser: Browser, server: Server) -> Iterator[Callable[[str], Page]]:
    """`signed_in(role)`: a page in a new browser context, signed in with that role's token."""
    contexts = []

    def sign_in(role: str) -> Page:
        context = browser.new_context(viewport={"width": 1366, "height": 860})
        contexts.append(context)
        page = context.new_page()
        page.goto(server.page_url("/login"))
        page.fill("#token", server.tokens[role])
        page.click("button[type=submit]")
        page.wait_for_url(server.page_url("/"))
        return page

    yield sign_in
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """`screenshot(page, name)`: a full-page PNG under test-artifacts/screenshots/."""

    def save(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
        path = SCREENSHOTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
