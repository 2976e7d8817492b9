"""Who acted versus on whose behalf, on SQLite and PostgreSQL: what a run does (its agent's
tool calls, its secret reads) is the machine's act on behalf of the run's principal, even
when that principal is a person; what a person does at the terminal is the person's. Both
fields are in every record, in `rota audit list` and its JSON, and in the hash chain, which
still verifies records written before the field existed."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rota import Agent, App, ToolContext, tool
from rota.cli import app as cli
from rota.identity.audit import record, verify_chain
from rota.storage import SqlStore
from rota.storage import schema as schema_mod
from rota.storage.audit import (
    APPROVAL_GRANTED,
    GENESIS_HASH,
    RUN_STARTED,
    SECRET_READ,
    TOOL_CALLED,
    AuditRecord,
)
from rota.testing import ScriptedModel, call, say


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTA_ACTOR", "alice")
    monkeypatch.setenv("ROTA_SECRET_KEY", base64.b64encode(b"a" * 32).decode())
    monkeypatch.delenv("ROTA_APP", raising=False)


KEY = "hk-live-2718281828"


def rota(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args], input=stdin)


def by_action(app: App, action: str) -> list[AuditRecord]:
    return sorted(app.store.audit_records(action=action, limit=100), key=lambda r: r.seq)


@pytest.fixture
def alice_app(app: App) -> Iterator[App]:
    """Alice, a person, has an agent that runs as her and a refund that needs her approval."""
    app.principal("alice", kind="user", scopes=["tickets:read"], roles=["approver:finance"])

    @tool(scopes=["tickets:read"])
    def read_ticket(ctx: ToolContext[None], ticket_id: str) -> str:
        """Read a ticket."""
        ctx.secret("helpdesk_key")
        return f"ticket {ticket_id}: printer on fire"

    model = ScriptedModel("assistant", script=[call(read_ticket, ticket_id="7"), say("done")])
    app.agent(Agent("assistant", model, "Help Alice.", tools=[read_ticket], run_as="alice"))

    @app.workflow
    async def refund(ctx: Any, payload: dict[str, Any]) -> Any:
        decision = await ctx.approval("Refund $5?", approvers="finance", timeout="1d")
        return decision.approved

    app.store.schema_version()  # opened (migrated) now: the CLI commands need the schema
    yield app


def test_an_agent_under_a_person_acts_as_the_machine_on_her_behalf(
    alice_app: App, database_url: str
) -> None:
    app = alice_app
    saved = rota(database_url, "secrets", "set", "helpdesk_key", "--grant", "alice", stdin=KEY)
    assert saved.exit_code == 0, saved.output

    handle = app.run_now("assistant", "what is ticket 7?")
    app.drain()
    assert handle.result() == "done"

    for action in (RUN_STARTED, TOOL_CALLED, SECRET_READ):
        (rec,) = [r for r in by_action(app, action) if r.run_id == handle.id]
        assert (rec.actor, rec.actor_kind, rec.on_behalf_of) == ("alice", "machine", "alice"), (
            action
        )
    (called,) = by_action(app, TOOL_CALLED)
    assert called.detail["agent"] == "assistant"
    assert verify_chain(app.store).ok


def test_a_cli_approval_is_the_person_acting(alice_app: App, database_url: str) -> None:
    app = alice_app
    handle = app.run_now("refund")
    app.drain()
    (request,) = app.store.approvals()
    approved = rota(database_url, "approvals", "approve", request.id)
    assert approved.exit_code == 0, approved.output
    app.drain()
    assert handle.result() is True

    (granted,) = by_action(app, APPROVAL_GRANTED)
    assert (granted.actor, granted.actor_kind, granted.on_behalf_of) == ("alice", "human", "alice")


def test_audit_list_shows_who_acted_and_on_whose_behalf(alice_app: App, database_url: str) -> None:
    app = alice_app
    saved = rota(database_url, "secrets", "set", "helpdesk_key", "--grant", "alice", stdin=KEY)
    assert saved.exit_code == 0, saved.output
    app.run_now("assistant", "what is ticket 7?")
    app.drain()
    record(app.store, "rota:app", "principal.changed", subject="alice")

    listed = rota(database_url, "audit", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["action"]: r for r in json.loads(listed.stdout)}
    assert (rows[TOOL_CALLED]["actor_kind"], rows[TOOL_CALLED]["on_behalf_of"]) == (
        "machine",
        "alice",
    )
    assert (rows["secret.changed"]["actor_kind"], rows["secret.changed"]["on_behalf_of"]) == (
        "human",
        "alice",
    )
    assert rows["principal.changed"]["on_behalf_of"] is None  # rota's own act, for no one

    table = rota(database_url, "audit", "list", "--action", "tool.called")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == [
        "seq",
        "at",
        "(UTC)",
        "actor",
        "actor",
        "kind",
        "on",
        "behalf",
        "of",
        "action",
        "subject",
        "run",
        "detail",
    ]
    assert row.split()[3:7] == ["alice", "machine", "alice", TOOL_CALLED]

    assert rota(database_url, "audit", "verify").exit_code == 0


def test_principal_filter_matches_the_actor_or_whom_it_acted_for(store: SqlStore) -> None:
    record(store, "alice", APPROVAL_GRANTED, actor_kind="human")
    record(store, "rota:worker", TOOL_CALLED, on_behalf_of="alice")
    record(store, "bob", APPROVAL_GRANTED, actor_kind="human")
    found = store.audit_records(principal="alice")
    assert sorted((r.actor, r.on_behalf_of) for r in found) == [
        ("alice", "alice"),
        ("rota:worker", "alice"),
    ]


def test_on_behalf_of_is_hashed_so_editing_it_is_caught(store: SqlStore) -> None:
    record(store, "svc-a", TOOL_CALLED)
    record(store, "svc-b", TOOL_CALLED)
    assert verify_chain(store).ok
    store.conn().execute("UPDATE rota_audit SET on_behalf_of = 'mallory' WHERE seq = 1")
    store.conn().execute("UPDATE rota_audit SET on_behalf_of = NULL WHERE seq = 2")
    report = verify_chain(store)
    edited = {p.seq for p in report.problems if p.check == "hash"}
    assert edited == {1, 2}


def _old_hash(fields: dict[str, Any]) -> str:
    """How records were hashed before on_behalf_of existed (schema version 8)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_records_written_before_the_upgrade_still_verify(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_rota:  # a database made by the rota before this field
        old = tuple(m for m in schema_mod.MIGRATIONS if m.version <= 8)
        old_rota.setattr(schema_mod, "MIGRATIONS", old)
        old_rota.setattr(schema_mod, "LATEST_VERSION", 8)
        store = SqlStore(database_url)
        store.migrate()
        prev = GENESIS_HASH
        for seq in (1, 2):
            fields: dict[str, Any] = {
                "seq": seq,
                "id": f"old-{seq}",
                "at": 1000.0 + seq,
                "actor": "alice",
                "actor_kind": "human",
                "action": APPROVAL_GRANTED,
                "subject": None,
                "run_id": None,
                "detail": "{}",
                "prev_hash": prev,
            }
            fields["hash"] = prev = _old_hash(fields)
            store.conn().execute(
                "INSERT INTO rota_audit (seq, id, at, actor, actor_kind, action, subject, "
                "run_id, detail, prev_hash, hash) VALUES (:seq, :id, :at, :actor, :actor_kind, "
                ":action, :subject, :run_id, :detail, :prev_hash, :hash)",
                fields,
            )
        store.conn().execute(
            "INSERT INTO rota_meta (key, value) VALUES ('audit_head', :v)",
            {"v": json.dumps({"seq": 2, "hash": prev})},
        )
        store.close()

    store = SqlStore(database_url)
    assert store.migrate() == (8, schema_mod.LATEST_VERSION)
    record(store, "svc-a", TOOL_CALLED)
    rows = sorted(store.audit_records(), key=lambda r: r.seq)
    assert [(r.seq, r.on_behalf_of) for r in rows] == [(1, None), (2, None), (3, "svc-a")]
    report = verify_chain(store)
    assert report.ok, report.problems
    assert report.checked == 3
    store.conn().execute("UPDATE rota_audit SET on_behalf_of = 'alice' WHERE seq = 1")
    assert {p.seq for p in verify_chain(store).problems if p.check == "hash"} == {1}
    store.close()
