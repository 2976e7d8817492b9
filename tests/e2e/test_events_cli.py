"""`rota events list|replay|rejected` on SQLite and PostgreSQL, against an app written to a
temporary folder (webhook and event triggers) and loaded with --app like a user's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_module import AppModule, app_module

from rota.scheduling.webhooks import WebhookRejected, sign_standard

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MODULE = "events_cli_app"
APP_SOURCE = """
from rota import App, on_event, on_webhook

app = App()


@app.job(trigger=on_webhook("payments", secret_env="PAYMENTS_WEBHOOK_SECRET"))
def reconcile(ctx, payload):
    return payload


@app.job(trigger=on_event("billing.event"))
def bill(ctx, event):
    return event
"""


class Env(AppModule):
    def rota_json(self, *args: str) -> Any:
        result = self.rota(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def deliver(self, payload: Any, msg_id: str, *, secret: str = SECRET) -> Any:
        body = json.dumps(payload).encode()
        return self.app.receive_webhook(
            "payments", sign_standard(secret, msg_id, time.time(), body), body
        )


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("PAYMENTS_WEBHOOK_SECRET", SECRET)
    with app_module(Env, APP_SOURCE, MODULE, database_url, tmp_path, monkeypatch) as env:
        yield env


def test_list_shows_emitted_and_webhook_events_newest_first(env: Env) -> None:
    emitted = env.app.emit("billing.event", {"type": "upgrade"}, idempotency_key="evt_1")
    delivered = env.deliver({"id": "in_1"}, "msg_1")

    listed = env.rota_json("events", "list")

    assert [e["id"] for e in listed] == [delivered.event_id, emitted.event_id]
    newest = listed[0]
    assert (newest["name"], newest["source"], newest["idempotency_key"]) == (
        "payments",
        "webhook",
        "msg_1",
    )
    assert newest["payload"] == {"id": "in_1"}
    assert newest["created_at"].endswith("Z")
    assert (listed[1]["name"], listed[1]["source"]) == ("billing.event", "app")

    table = env.rota("events", "list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "name", "source", "idempotency"]
    assert delivered.event_id in lines[1] and "msg_1" in lines[1] and "webhook" in lines[1]
    assert emitted.event_id in lines[2] and "evt_1" in lines[2]

    only = env.rota_json("events", "list", "--name", "payments", "--limit", "5")
    assert [e["id"] for e in only] == [delivered.event_id]


def test_list_says_when_there_is_nothing(env: Env) -> None:
    result = env.rota("events", "list", "--name", "payments")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "no events named 'payments'" in result.stderr


def test_replay_enqueues_a_new_run_for_the_event(env: Env) -> None:
    delivered = env.deliver({"id": "in_2"}, "msg_2")
    [original] = delivered.runs
    env.app.drain()

    replayed = env.rota_json("events", "replay", delivered.event_id)

    [run] = replayed["runs"]
    assert (replayed["event_id"], replayed["name"]) == (delivered.event_id, "payments")
    assert run["name"] == "reconcile" and run["id"] != original.id
    again = env.app.get_run(run["id"])
    assert (again.state.value, again.trigger, again.trigger_ref) == (
        "ENQUEUED",
        "webhook",
        delivered.event_id,
    )
    assert again.payload == {"id": "in_2"}

    text = env.rota("events", "replay", delivered.event_id)  # a replay can be replayed again
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"replayed event {delivered.event_id} (payments): enqueued run ")
    assert "(reconcile)" in text.stdout
    assert len(env.runs()) == 3
    assert len(env.app.store.events()) == 1  # replaying stores no new event


def test_replay_of_an_unknown_event_is_a_usage_error(env: Env) -> None:
    env.deliver({"id": "in_3"}, "msg_3")
    before = len(env.runs())

    result = env.rota("events", "replay", "no-such-event")

    assert result.exit_code == 2, result.output
    assert "error: no event with id 'no-such-event'" in result.stderr
    assert "rota events list" in result.stderr
    assert "Traceback" not in result.output
    assert len(env.runs()) == before


def test_replay_of_an_event_nothing_listens_to_warns(env: Env) -> None:
    emitted = env.app.emit("nobody.listens", {"x": 1})

    result = env.rota("events", "replay", emitted.event_id)

    assert result.exit_code == 0, result.output
    assert "triggers no job or workflow of this app, so nothing was enqueued" in result.stderr
    assert env.runs() == []


def test_rejected_lists_refused_deliveries(env: Env) -> None:
    with pytest.raises(WebhookRejected):
        env.deliver({"id": "in_4"}, "msg_forged", secret="whsec_" + "A" * 44)
    env.deliver({"id": "in_5"}, "msg_ok")

    [row] = env.rota_json("events", "rejected")

    assert (row["hook"], row["status"], row["reason"], row["delivery_id"]) == (
        "payments",
        401,
        "bad_signature",
        "msg_forged",
    )
    assert row["body_bytes"] == len(b'{"id": "in_4"}')
    assert row["message"].startswith("signature does not match")
    assert row["received_at"].endswith("Z")

    table = env.rota("events", "rejected", "--hook", "payments")
    assert table.exit_code == 0, table.output
    [header, line] = table.stdout.splitlines()
    assert header.split()[:4] == ["received", "(UTC)", "hook", "status"]
    for cell in ("payments", "401", "bad_signature", "msg_forged", "14 B", "signature does not"):
        assert cell in line

    other = env.rota("events", "rejected", "--hook", "github")
    assert other.exit_code == 0, other.output
    assert "no refused deliveries to webhook 'github'" in other.stderr
