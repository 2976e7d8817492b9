"""Identity end to end: `rota principals` and `rota tokens`, the HTTP API's token checks, and
a real `rota worker` process whose logs, stored results and errors never show a secret."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result
from worker_process import rota_cli, run_worker_after_jobs

from rota import App
from rota.api import ApiServer, create_api
from rota.cli import app as cli
from rota.clock import FakeClock
from rota.identity import admin, tokens
from rota.identity.audit import verify_chain
from rota.storage import SqlStore
from rota.storage.audit import AUTH_DENIED, PRINCIPAL_CHANGED, SCOPE_CHANGED

VALUE = "whsec-live-Zk31-do-not-print"
KEY = base64.b64encode(b"e" * 32).decode()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_ACTOR", "alice@example.com")
    monkeypatch.setenv("ROTA_SECRET_KEY", KEY)
    monkeypatch.delenv("ROTA_APP", raising=False)


def rota(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args], input=stdin)


@pytest.fixture
def migrated(database_url: str) -> str:
    store = SqlStore(database_url)
    store.migrate()
    store.close()
    return database_url


def test_principals_cli_changes_are_audited_as_the_human_who_made_them(migrated: str) -> None:
    url = migrated
    added = rota(url, "principals", "add", "svc-billing", "-s", "billing:read")
    assert added.exit_code == 0, added.output
    assert rota(url, "principals", "grant", "svc-billing", "-s", "billing:write").exit_code == 0
    assert rota(url, "principals", "revoke", "svc-billing", "-s", "billing:read").exit_code == 0
    assert rota(url, "principals", "disable", "svc-billing").exit_code == 0
    listed = rota(url, "principals", "list", "--json")
    assert '"scopes": [\n      "billing:write"\n    ]' in listed.stdout
    assert '"disabled": true' in listed.stdout

    store = SqlStore(url)
    records = sorted(store.audit_records(limit=50), key=lambda r: r.seq)
    assert [(r.actor, r.actor_kind, r.action) for r in records] == [
        ("alice@example.com", "human", PRINCIPAL_CHANGED),
        ("alice@example.com", "human", SCOPE_CHANGED),
        ("alice@example.com", "human", SCOPE_CHANGED),
        ("alice@example.com", "human", SCOPE_CHANGED),
        ("alice@example.com", "human", PRINCIPAL_CHANGED),
    ]
    assert records[3].detail == {"scopes_removed": ["billing:read"]}
    assert verify_chain(store).ok
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "svc", "-s", "Billing:Write"], "malformed scope 'Billing:Write'"),
        (["add", "svc", "--kind", "robot"], "principal kind must be 'user'"),
        (["add", "svc", "-r", "root"], "unknown role 'root'"),
        (["grant", "ghost", "-s", "a:b"], "unknown principal 'ghost'"),
        (["disable", "ghost"], "unknown principal 'ghost'"),
    ],
)
def test_bad_principal_input_is_refused_clearly_and_changes_nothing(
    migrated: str, args: list[str], message: str
) -> None:
    result = rota(migrated, "principals", *args)
    # exit 2: usage error; 3: not found (docs/cli.md)
    assert result.exit_code == (3 if "unknown principal" in message else 2), result.output
    assert message in result.output
    store = SqlStore(migrated)
    assert store.principals() == [] and store.audit_records() == []
    store.close()


def test_a_token_is_shown_once_and_stored_hashed(migrated: str) -> None:
    assert rota(migrated, "principals", "add", "svc-ci", "-r", "viewer").exit_code == 0
    made = rota(migrated, "tokens", "create", "svc-ci", "--expires", "30d")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("rota_") and "shown only now" in made.stderr
    store = SqlStore(migrated)
    [record] = store.tokens("svc-ci")
    assert token not in repr(record) and token.split("_", 2)[2] not in record.token_hash
    assert tokens.authenticate(store, token).name == "svc-ci"
    listed = rota(migrated, "tokens", "list")
    assert record.id in listed.stdout and token not in listed.stdout
    assert rota(migrated, "tokens", "revoke", record.id).exit_code == 0
    again = rota(migrated, "tokens", "revoke", record.id)
    assert again.exit_code == 4 and f"token {record.id} was already revoked" in again.output
    store.close()


# -- the HTTP API --------------------------------------------------------------------------


@pytest.fixture
def api(app: App) -> Any:
    app.principal("svc-ci", roles=["viewer"])
    app.principal("svc-bare")
    with TestClient(create_api(app)) as client:
        yield client


def _get(client: Any, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(path, headers=headers)


def test_the_api_accepts_a_valid_token_and_checks_roles(app: App, api: Any) -> None:
    human = admin.Actor("alice", "human")
    viewer = tokens.issue(app.store, "svc-ci", human).token
    bare = tokens.issue(app.store, "svc-bare", human).token

    me = _get(api, "/api/whoami", viewer)
    assert me.status_code == 200 and me.json()["roles"] == ["viewer"]
    assert _get(api, "/api/audit", viewer).status_code == 200

    forbidden = _get(api, "/api/audit", bare)
    assert forbidden.status_code == 403
    assert "principal 'svc-bare' lacks the role 'viewer'" in forbidden.json()["message"]
    [denied] = app.store.audit_records(action=AUTH_DENIED)
    assert (denied.actor, denied.subject) == ("svc-bare", "GET /api/audit")


def test_the_api_refuses_revoked_expired_disabled_and_malformed_tokens(app: App, api: Any) -> None:
    human = admin.Actor("alice", "human")
    revoked = tokens.issue(app.store, "svc-ci", human)
    tokens.revoke(app.store, revoked.id, human)
    past = FakeClock(start=1_000_000.0)
    expired = tokens.issue(app.store, "svc-ci", human, expires_in_s=60, clock=past)
    disabled = tokens.issue(app.store, "svc-bare", human)
    admin.set_disabled(app.store, "svc-bare", human, True)
    forged = revoked.token[:-4] + "AAAA"

    cases = [
        (None, "unauthenticated", "needs an API token"),
        ("not-a-token", "invalid_token", "malformed token"),
        (revoked.token, "invalid_token", f"token {revoked.id} was revoked"),
        (expired.token, "invalid_token", f"token {expired.id} expired"),
        (disabled.token, "invalid_token", "principal 'svc-bare' is disabled"),
        (forged, "invalid_token", "unknown token"),
    ]
    for token, error, message in cases:
        answer = _get(api, "/api/whoami", token)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.json()["error"] == error and message in answer.json()["message"]
        assert answer.headers["www-authenticate"] == 'Bearer realm="rota"'
        if token is not None:
            assert token not in answer.text  # a refused token is never echoed
    reasons = [r.detail["reason"] for r in app.store.audit_records(action=AUTH_DENIED)]
    assert len(reasons) == 5  # every presented token that was refused; a missing one is not
    assert any("revoked" in r for r in reasons) and any("expired" in r for r in reasons)


# -- a real worker process: nothing prints or stores the secret ----------------------------

LEAKY_APP = """
import logging, os, signal
from rota import App

app = App()
app.principal("svc-billing", scopes=["billing:write"])

@app.job(run_as="svc-billing", priority=10)
def leaky(ctx):
    key = ctx.secret("stripe_key")
    ctx.log.warning("calling the gateway with %s", key)
    ctx_result = {"key_used": key}
    raise RuntimeError(f"gateway refused key {key}; result would have been {ctx_result}")

@app.job(run_as="svc-billing", priority=10)
def returns_it(ctx):
    return {"token": ctx.secret("stripe_key")}

@app.job(priority=0)
def stop_worker(ctx):
    os.kill(os.getpid(), signal.SIGTERM)
    return "stopping"
"""


def test_a_worker_never_logs_stores_or_prints_a_secret(tmp_path: Path, sqlite_url: str) -> None:
    cli_run = rota_cli(tmp_path, LEAKY_APP, sqlite_url, KEY)
    worker = run_worker_after_jobs(cli_run, VALUE, ("leaky", "returns_it", "stop_worker"))
    assert "calling the gateway with [redacted:stripe_key]" in worker.stderr
    listed = cli_run("runs", "list", "--json").stdout
    traces = [cli_run("runs", "show", r["id"], "--json").stdout for r in json.loads(listed)]
    assert len(traces) == 3 and all(traces)
    for output in (worker.stdout, worker.stderr, listed, *traces, cli_run("audit", "list").stdout):
        assert VALUE not in output
    assert "[redacted:stripe_key]" in listed

    store = SqlStore(sqlite_url)
    store.close()
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert b"stripe_key" in stored and VALUE.encode() not in stored


def test_rota_talks_to_a_remote_server_with_a_token(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.principal("svc-ci", roles=["viewer"])
    human = admin.Actor("alice", "human")
    good = tokens.issue(app.store, "svc-ci", human)
    bad = tokens.issue(app.store, "svc-ci", human)
    tokens.revoke(app.store, bad.id, human)
    server = ApiServer(app, "127.0.0.1", 0)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start within 10s"
            time.sleep(0.01)
        monkeypatch.setenv("ROTA_TOKEN", good.token)
        me = CliRunner().invoke(cli, ["whoami", "--server", server.url])
        monkeypatch.setenv("ROTA_TOKEN", bad.token)
        refused = CliRunner().invoke(cli, ["whoami", "--server", server.url])
    finally:
        server.stop()
        thread.join(timeout=15)
    assert me.exit_code == 0, me.output
    assert json.loads(me.stdout)["name"] == "svc-ci"
    assert refused.exit_code == 4  # refused (docs/cli.md)
    assert f"answered 401: the API token was refused: token {bad.id} was revoked" in (
        refused.output
    )
