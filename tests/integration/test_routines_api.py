"""What the dashboard reads about routines, on both databases: `GET /api/routines` (the
routines loaded and the problems of the files that were not), `GET /api/dropped-runs` (the
runs caps held back, with their reasons), their refusals of bad input; and the message of
`rota tokens create --fire NAME` naming the routine's own fire endpoint."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from rota import App
from rota.api import create_api
from rota.api.dashboard.sessions import mint_login_code
from rota.cli import app as cli
from rota.clock import FakeClock
from rota.identity import admin, tokens
from rota.routines import RunDropped
from rota.testing import say, scripted

HUMAN = admin.Actor("root", "human")
START = 1_767_225_600.0


def routine(name: str, who: str, extra: str = "") -> str:
    return f"---\nname: {name}\n{who}\nmodel: scripted:echo\n{extra}---\nDo the thing.\n"


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[App]:
    a = App(database_url, clock=FakeClock(START))
    a.principal("alice", kind="user", scopes=["mail:read"])
    a.principal("viewer", roles=["viewer"])
    (tmp_path / "digest.md").write_text(
        routine("digest", "owner: alice", "caps: {per_day: 1, over: drop}\n")
    )
    (tmp_path / "broken.md").write_text(routine("broken", "owner: nobody"))
    with scripted("echo", script=[say("done")]):
        a.load_routines(tmp_path)
        yield a
    a.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app)) as c:
        c.headers["Authorization"] = f"Bearer {tokens.issue(app.store, 'viewer', HUMAN).token}"
        yield c


def test_routines_are_listed_with_the_problems_of_files_that_did_not_load(
    app: App, client: TestClient, tmp_path: Path
) -> None:
    answer = client.get("/api/routines")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(r["name"], r["kind"], r["runs_as"]) for r in body["routines"]] == [
        ("digest", "personal", "alice")
    ]
    assert body["problems"] == [
        {
            "file": str(tmp_path / "broken.md"),
            "line": 3,
            "column": 8,
            "message": "unknown user principal 'nobody'; known: alice",
        }
    ]
    assert client.get("/api/routines", headers={"Authorization": ""}).status_code == 401


def test_dropped_runs_are_listed_with_their_reasons(app: App, client: TestClient) -> None:
    kept = app.run_now("digest")
    with pytest.raises(RunDropped):
        app.run_now("digest", {"text": "again"})
    answer = client.get("/api/dropped-runs", params={"name": "digest", "outcome": "dropped"})
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    assert (item["name"], item["outcome"], item["reason"], item["trigger"]) == (
        "digest",
        "dropped",
        "per_day 1 used up",
        "manual",
    )
    assert item["id"] != kept.id
    assert client.get("/api/dropped-runs", params={"outcome": "deferred"}).json() == {"items": []}


@pytest.mark.parametrize(
    ("query", "named"),
    [({"outcome": "lost"}, "outcome"), ({"limit": "0"}, "limit"), ({"nme": "x"}, "nme")],
)
def test_bad_dropped_run_queries_are_refused_naming_what_is_allowed(
    app: App, client: TestClient, query: dict[str, str], named: str
) -> None:
    with pytest.raises(RunDropped):
        app.run_now("digest")
        app.run_now("digest")
    answer = client.get("/api/dropped-runs", params=query)
    assert answer.status_code == 400
    assert named in answer.json()["message"]
    assert len(app.store.capped_runs()) == 1  # nothing dropped or changed by a refusal


APP_MODULE = """
from rota import App
from rota.testing import register_scripted, say

register_scripted("echo", script=[say("done")])
app = App()
app.principal("alice", kind="user", scopes=["mail:read"])

@app.job
def nightly(ctx):
    return "ok"

loaded = app.load_routines()
"""


def test_tokens_create_fire_names_the_routines_own_endpoint(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "proj"
    (folder / "routines").mkdir(parents=True)
    module = f"tokens_app_{abs(hash(str(tmp_path)))}"
    (folder / f"{module}.py").write_text(APP_MODULE)
    (folder / "routines" / "digest.md").write_text(routine("digest", "owner: alice"))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ROTA_DATABASE_URL", database_url)
    monkeypatch.setenv("ROTA_APP", f"{module}:app")
    monkeypatch.syspath_prepend(str(folder))
    App(database_url).store.close()  # the tokens table: a migrated database
    runner = CliRunner()
    shown: dict[str, Any] = {}
    for name in ("digest", "nightly"):
        made = runner.invoke(cli, ["tokens", "create", "--fire", name])
        assert made.exit_code == 0, made.output
        shown[name] = made.output
    assert "only to fire 'digest' (POST /api/routines/digest/fire)" in shown["digest"]
    assert "only to fire 'nightly' (POST /api/jobs/nightly/runs)" in shown["nightly"]


def test_the_routines_page_shows_bad_files_and_runs_held_back(app: App, tmp_path: Path) -> None:
    app.run_now("digest")
    with pytest.raises(RunDropped):
        app.run_now("digest")
    with TestClient(create_api(app)) as browser:
        code = mint_login_code(app.store, "viewer", app.clock.now())
        browser.get(f"/login/once?code={code}")  # signed in: the session cookie is set
        shown = browser.get("/routines")
        assert shown.status_code == 200, shown.text
        text = html.unescape(shown.text)
        assert f"{tmp_path / 'broken.md'}:3:8</code>: unknown user principal 'nobody'" in text
        assert 'data-routine="digest"' in text and "per_day 1 used up" in text
        none = browser.get("/routines", params={"outcome": "deferred", "name": ""})
        assert "No held run matches these filters." in none.text
        bad = browser.get("/routines", params={"outcome": "lost"})
        assert bad.status_code == 400 and "outcome" in bad.text
    assert len(app.store.capped_runs()) == 1  # a refused page changed nothing
