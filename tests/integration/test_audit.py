"""The audit log on SQLite and PostgreSQL: a clean chain verifies; editing or deleting any
row (straight in SQL) makes verify fail and name it; concurrent appenders keep it gapless."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest
from typer.testing import CliRunner

from rota.cli import app as cli
from rota.errors import ConfigError
from rota.identity.audit import record, verify_chain
from rota.storage import SqlStore
from rota.storage.audit import APPROVAL_GRANTED, GENESIS_HASH, RUN_STARTED, TOOL_DENIED


def _fill(store: SqlStore, n: int = 10) -> None:
    for i in range(n):
        record(
            store,
            f"svc-{i % 2}",
            [RUN_STARTED, TOOL_DENIED, APPROVAL_GRANTED][i % 3],
            actor_kind="human" if i % 3 == 2 else "machine",
            subject=f"thing-{i}",
            run_id=f"run-{i}",
            i=i,
            tool="create_billing_event",
        )


def _messages(store: SqlStore) -> list[str]:
    report = verify_chain(store)
    assert not report.ok
    return [p.message for p in report.problems]


def test_clean_chain_verifies(store: SqlStore) -> None:
    assert verify_chain(store).ok  # empty
    _fill(store)
    report = verify_chain(store)
    assert report.ok, report.problems
    assert report.checked == 10
    rows = sorted(store.audit_records(limit=100), key=lambda r: r.seq)
    assert [r.seq for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert report.head is not None and report.head.seq == 10 and report.head.hash == rows[-1].hash
    assert rows[0].detail == {"i": 0, "tool": "create_billing_event"}


def test_actor_kind_is_validated(store: SqlStore) -> None:
    with pytest.raises(ConfigError):
        record(store, "alice", RUN_STARTED, actor_kind="robot")


EDITS = {
    "id": "'forged-id'",
    "at": "at + 1",
    "actor": "'mallory'",
    "actor_kind": "'human'",
    "action": "'tool.called'",
    "subject": "'other'",
    "run_id": "'run-x'",
    "detail": "'{\"i\":999}'",
    "prev_hash": "'" + "1" * 64 + "'",
    "hash": "'" + "2" * 64 + "'",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_any_field_is_named(store: SqlStore, column: str) -> None:
    _fill(store)
    if column == "actor_kind":  # make it differ from what seq 5 holds
        edit = "CASE WHEN actor_kind = 'human' THEN 'machine' ELSE 'human' END"
    else:
        edit = EDITS[column]
    store.conn().execute(f"UPDATE rota_audit SET {column} = {edit} WHERE seq = 5")
    messages = _messages(store)
    assert any(m.startswith("record seq 5 (id ") and "was edited" in m for m in messages), messages


def test_editing_seq_is_named(store: SqlStore) -> None:
    _fill(store)
    store.conn().execute("UPDATE rota_audit SET seq = 500 WHERE seq = 5")
    messages = _messages(store)
    assert any("record seq 5 is missing (deleted)" in m for m in messages), messages
    assert any(m.startswith("record seq 500 (id ") for m in messages), messages


def test_deleting_a_middle_row_is_named(store: SqlStore) -> None:
    _fill(store)
    store.conn().execute("DELETE FROM rota_audit WHERE seq = 4")
    messages = _messages(store)
    assert messages == [
        f"record seq 4 is missing (deleted) (before record seq 5, id {_id(store, 5)})"
    ]


def test_deleting_several_rows_is_named(store: SqlStore) -> None:
    _fill(store)
    store.conn().execute("DELETE FROM rota_audit WHERE seq IN (1, 6, 7)")
    messages = _messages(store)
    assert any(m.startswith("record seq 1 is missing") for m in messages), messages
    assert any(m.startswith("records seq 6 to 7 are missing") for m in messages), messages


def test_deleting_the_last_row_is_detected_by_the_head(store: SqlStore) -> None:
    _fill(store)
    store.conn().execute("DELETE FROM rota_audit WHERE seq = 10")
    messages = _messages(store)
    assert any(m.startswith("record seq 10 is missing (deleted)") for m in messages), messages


def test_deleting_every_row_or_the_head_is_detected(store: SqlStore) -> None:
    _fill(store, 3)
    store.conn().execute("DELETE FROM rota_meta WHERE key = 'audit_head'")
    assert any("audit head is missing" in m for m in _messages(store))
    record(store, "svc", RUN_STARTED)  # appending afterwards does not hide it either way
    store.conn().execute("DELETE FROM rota_audit")
    assert _messages(store) == [
        "records seq 1 to 4 are missing (deleted) (at the end of the log; the head records them)"
    ]


def test_concurrent_appenders_make_a_gapless_valid_chain(database_url: str) -> None:
    setup = SqlStore(database_url)
    setup.migrate()
    errors: list[BaseException] = []

    def append(n: int) -> None:
        s = SqlStore(database_url)
        try:
            for i in range(25):
                record(s, f"worker-{n}", RUN_STARTED, i=i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = verify_chain(setup)
    assert report.ok, report.problems
    assert report.checked == 150
    assert report.head is not None and report.head.seq == 150
    setup.close()


def _id(store: SqlStore, seq: int) -> str:
    return store.conn().execute("SELECT id FROM rota_audit WHERE seq = :s", {"s": seq})[0]["id"]


def test_cli_list_filters_and_verify_exit_codes(store: SqlStore, database_url: str) -> None:
    record(store, "alice", APPROVAL_GRANTED, actor_kind="human", subject="refund", amount=500)
    record(store, "svc-billing", TOOL_DENIED, tool="create_billing_event")
    record(store, "svc-billing", RUN_STARTED, trigger="cron")
    old = store.audit("svc-old", RUN_STARTED, at=time.time() - 7200)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["--database-url", database_url, "audit", *args])
        return result.exit_code, result.stdout, result.stderr

    code, stdout, _ = run("list", "--json")
    assert code == 0
    assert [r["seq"] for r in json.loads(stdout)] == [4, 3, 2, 1]
    code, stdout, _ = run("list", "--principal", "svc-billing", "--json")
    assert [r["action"] for r in json.loads(stdout)] == [RUN_STARTED, TOOL_DENIED]
    code, stdout, _ = run("list", "--action", "approval.*", "--json")
    rows = json.loads(stdout)
    assert [(r["actor"], r["actor_kind"], r["detail"]) for r in rows] == [
        ("alice", "human", {"amount": 500})
    ]
    code, stdout, _ = run("list", "--since", "1h", "--json")
    assert old.seq not in [r["seq"] for r in json.loads(stdout)]
    assert len(json.loads(stdout)) == 3
    code, stdout, _ = run("list", "--since", "2000-01-01T00:00:00Z", "--limit", "2", "--json")
    assert [r["seq"] for r in json.loads(stdout)] == [4, 3]
    code, _, stderr = run("list", "--since", "yesterday")
    assert code == 2 and "--since" in stderr
    code, stdout, _ = run("list")
    assert code == 0 and "svc-billing" in stdout

    code, stdout, _ = run("verify")
    assert code == 0 and "4 records checked" in stdout
    store.conn().execute("UPDATE rota_audit SET actor = 'mallory' WHERE seq = 2")
    store.conn().execute("DELETE FROM rota_audit WHERE seq = 3")
    code, _, stderr = run("verify")
    assert code == 1
    assert f"record seq 2 (id {_id(store, 2)}) was edited: hash mismatch" in stderr
    assert "record seq 3 is missing (deleted)" in stderr
    code, stdout, _ = run("verify", "--json")
    assert code == 1
    report = json.loads(stdout)
    assert report["ok"] is False
    assert {(p["check"], p["seq"]) for p in report["problems"]} == {("hash", 2), ("missing", 3)}
