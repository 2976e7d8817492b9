"""POST /hooks/{name} over HTTP, on SQLite and PostgreSQL: Starlette's TestClient for most
cases, a real uvicorn server on an ephemeral port for one, and `rota dev` in a process of its
own for the hook-up next to the worker. Every refusal is checked for its status, its machine
reason, a message a human can act on, its record, and that nothing was stored or enqueued."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from rota import App, on_webhook
from rota.api import ApiServer, create_api
from rota.cli import app as cli
from rota.model import RunFilter
from rota.scheduling.webhooks import sign_github, sign_standard
from rota.storage import SqlStore

HERE = Path(__file__).parent
ROTA = Path(sys.executable).parent / "rota"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
GITHUB_SECRET = "It's a Secret to Everybody"
SMALL = 1024  # max_body of the "small" hook, for bodies that are cheap to send over a socket


@dataclass
class Hooks:
    app: App
    ran: list[Any] = field(default_factory=list)

    @property
    def store(self) -> SqlStore:
        return self.app.store

    def events(self) -> list[Any]:
        return self.store.events()

    def runs(self) -> list[Any]:
        return self.store.list_runs(RunFilter(limit=1000))


def make_app(url: str, ran: list[Any]) -> App:
    app = App(url)

    @app.job(trigger=on_webhook("payments", secret_env="PAYMENTS_WEBHOOK_SECRET"))
    def reconcile(ctx: Any, payload: Any) -> None:
        ran.append(payload)

    @app.job(trigger=on_webhook("github", secret_env="GITHUB_WEBHOOK_SECRET", scheme="github"))
    def push(ctx: Any, payload: Any) -> None:
        ran.append(payload)

    @app.job(trigger=on_webhook("small", secret_env="PAYMENTS_WEBHOOK_SECRET", max_body=SMALL))
    def small(ctx: Any, payload: Any) -> None:
        ran.append(payload)

    return app


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)


@pytest.fixture
def hooks(database_url: str, secrets: None) -> Iterator[Hooks]:
    ran: list[Any] = []
    app = make_app(database_url, ran)
    yield Hooks(app, ran)
    app.close()


@pytest.fixture
def client(hooks: Hooks) -> Iterator[TestClient]:
    with TestClient(create_api(hooks.app)) as c:
        yield c


def standard(
    payload: Any = None,
    *,
    msg_id: str | None = None,
    timestamp: float | None = None,
    secret: str = SECRET,
    body: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks delivery: (body, headers)."""
    raw = body if body is not None else json.dumps(payload or {"type": "invoice.paid"}).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = time.time() if timestamp is None else timestamp
    return raw, sign_standard(secret, msg_id, ts, raw)


def post(client: Any, hook: str, delivery: tuple[bytes, dict[str, str]]) -> Any:
    body, headers = delivery
    return client.post(
        f"/hooks/{hook}", content=body, headers={"content-type": "application/json", **headers}
    )


# -- accepted ---------------------------------------------------------------------------


def test_a_valid_standard_delivery_is_stored_and_enqueues_a_webhook_run(
    hooks: Hooks, client: TestClient
) -> None:
    payload = {"type": "invoice.paid", "id": "in_1", "amount": 500}

    response = post(client, "payments", standard(payload, msg_id="msg_1"))

    assert response.status_code == 202, response.text
    answer = response.json()
    [run_id] = answer["runs"]
    assert answer["duplicate"] is False
    assert answer["message"] == f"stored as event {answer['event_id']}; enqueued 1 run(s)"
    [event] = hooks.events()
    assert (event.id, event.name, event.source) == (answer["event_id"], "payments", "webhook")
    assert (event.idempotency_key, event.payload) == ("msg_1", payload)
    [run] = hooks.runs()
    assert (run.id, run.name, run.state.value) == (run_id, "reconcile", "ENQUEUED")
    assert (run.trigger, run.trigger_ref, run.payload) == ("webhook", event.id, payload)
    assert hooks.store.rejections() == []


def test_a_valid_github_delivery_is_accepted(hooks: Hooks, client: TestClient) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()
    headers = sign_github(GITHUB_SECRET, body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")

    response = client.post(
        "/hooks/github",
        content=body,
        headers={**headers, "X-GitHub-Event": "push", "content-type": "application/json"},
    )

    assert response.status_code == 202, response.text
    [event] = hooks.events()
    assert event.idempotency_key == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    [run] = hooks.runs()
    assert (run.name, run.trigger, run.payload["ref"]) == ("push", "webhook", "refs/heads/main")


@pytest.mark.parametrize("scheme", ["standard", "github"])
def test_a_redelivered_id_is_a_duplicate_stored_and_run_once(
    hooks: Hooks, client: TestClient, scheme: str
) -> None:
    if scheme == "standard":
        # The sender re-signs a retry with a fresh timestamp; the id stays.
        first = standard({"n": 1}, msg_id="msg_again")
        again = standard({"n": 1}, msg_id="msg_again", timestamp=time.time() + 1)
        hook = "payments"
    else:
        body = b'{"n": 1}'
        first = again = (body, sign_github(GITHUB_SECRET, body, delivery="gh-delivery-1"))
        hook = "github"

    accepted = post(client, hook, first)
    duplicate = post(client, hook, again)

    assert accepted.status_code == 202, accepted.text
    assert duplicate.status_code == 200, duplicate.text
    answer = duplicate.json()
    assert answer["duplicate"] is True
    assert answer["event_id"] == accepted.json()["event_id"]
    assert answer["runs"] == []
    assert "received before" in answer["message"]
    assert len(hooks.events()) == 1
    assert len(hooks.runs()) == 1
    hooks.app.drain()
    assert hooks.ran == [{"n": 1}]


def test_no_valid_event_is_lost_while_the_worker_is_down(hooks: Hooks, client: TestClient) -> None:
    # No worker runs: every delivery is stored (and answered) all the same.
    answers = [post(client, "payments", standard({"n": n}, msg_id=f"m{n}")) for n in range(5)]
    answers.append(post(client, "payments", standard({"n": 3}, msg_id="m3")))  # a resend
    assert [a.status_code for a in answers] == [202] * 5 + [200]
    assert {r.state.value for r in hooks.runs()} == {"ENQUEUED"}

    stats = hooks.app.drain()  # the worker comes back

    assert sorted(p["n"] for p in hooks.ran) == [0, 1, 2, 3, 4]
    assert stats.succeeded == 5
    assert sorted(r.state.value for r in hooks.runs()) == ["SUCCEEDED"] * 5


# -- refused ----------------------------------------------------------------------------

Request = tuple[str, Any, dict[str, str]]  # (hook, content, headers)


def _bad_signature() -> Request:
    body, headers = standard({"n": 1}, msg_id="msg_forged", secret="whsec_" + "A" * 44)
    return "payments", body, headers


def _stale() -> Request:
    body, headers = standard({"n": 1}, msg_id="msg_old", timestamp=time.time() - 3600)
    return "payments", body, headers


def _malformed() -> Request:
    body, headers = standard(body=b'{"n": 1', msg_id="msg_broken")
    return "payments", body, headers


def _unknown() -> Request:
    body, headers = standard({"n": 1}, msg_id="msg_lost")
    return "refunds", body, headers


def _too_large_by_length() -> Request:
    body, headers = standard(body=b"x" * (1_048_576 + 1), msg_id="msg_big")
    return "payments", body, headers  # httpx sends Content-Length for bytes


def _too_large_streamed() -> Request:
    _, headers = standard(body=b"", msg_id="msg_stream")

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(40):
            yield b"x" * 65_536

    return "payments", chunks(), headers


def _missing_secret() -> Request:
    os.environ.pop("PAYMENTS_WEBHOOK_SECRET")  # restored by monkeypatch at the end of the test
    body, headers = standard({"n": 1}, msg_id="msg_nosecret")
    return "payments", body, headers


REFUSALS: dict[str, tuple[Callable[[], Request], int, str, str]] = {
    # case: (request, status, error, a fragment of the message)
    "bad signature": (_bad_signature, 401, "bad_signature", "signature does not match"),
    "stale timestamp": (_stale, 401, "stale_timestamp", "in the past, beyond the 300s"),
    "malformed json": (_malformed, 400, "malformed_json", "body is not valid JSON"),
    "unknown hook": (_unknown, 404, "unknown_hook", "no webhook named 'refunds'; known: github"),
    "too large (Content-Length)": (
        _too_large_by_length,
        413,
        "too_large",
        "body is 1048577 bytes (Content-Length); webhook 'payments' accepts at most 1048576",
    ),
    "too large (streamed)": (
        _too_large_streamed,
        413,
        "too_large",
        "body is over 1048576 bytes",
    ),
    "missing secret": (
        _missing_secret,
        500,
        "missing_secret",
        "webhook secret env var PAYMENTS_WEBHOOK_SECRET is not set",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_delivery_is_answered_recorded_and_stores_nothing(
    hooks: Hooks, client: TestClient, case: str
) -> None:
    make, status, error, fragment = REFUSALS[case]
    hook, content, headers = make()

    response = client.post(f"/hooks/{hook}", content=content, headers=headers)

    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert fragment in answer["message"]
    assert "whsec_" not in answer["message"]
    [rejection] = hooks.store.rejections()
    assert (rejection.hook, rejection.status, rejection.reason) == (hook, status, error)
    assert rejection.message == answer["message"]
    assert rejection.delivery_id == headers["webhook-id"]
    assert hooks.events() == []
    assert hooks.runs() == []
    if status == 413:
        assert response.headers["connection"] == "close"
        assert rejection.body_bytes > 1_048_576


def test_a_streamed_body_is_not_read_past_the_cap(hooks: Hooks) -> None:
    """An endless chunked body: the API stops reading one chunk past max_body."""
    api = create_api(hooks.app)
    chunk = b"x" * 100
    read: list[int] = []
    sent: list[dict[str, Any]] = []
    _, signed = standard(body=b"", msg_id="msg_endless")

    async def receive() -> dict[str, Any]:
        read.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hooks/small",
        "raw_path": b"/hooks/small",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"transfer-encoding", b"chunked")]
        + [(k.encode(), v.encode()) for k, v in signed.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8800),
    }
    try:
        asyncio.run(asyncio.wait_for(api(scope, receive, send), timeout=30))
    finally:
        api.state.rota.close()

    assert sent[0]["status"] == 413
    stopped_at = (SMALL // len(chunk) + 1) * len(chunk)  # the first chunk past the cap
    assert sum(read) == stopped_at
    answer = json.loads(sent[1]["body"])
    assert answer["error"] == "too_large"
    [rejection] = hooks.store.rejections()
    assert (rejection.hook, rejection.body_bytes) == ("small", stopped_at)
    assert hooks.events() == []


def test_a_body_of_exactly_max_body_is_accepted(hooks: Hooks, client: TestClient) -> None:
    filler = "y" * (SMALL - len('{"pad": ""}'))
    body = json.dumps({"pad": filler}).encode()
    assert len(body) == SMALL

    response = post(client, "small", standard(body=body))

    assert response.status_code == 202, response.text


def test_a_database_error_is_a_503_and_nothing_is_half_stored(
    hooks: Hooks, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = hooks.store
    sqlite = store.dialect.name == "sqlite"

    def fail_after_the_event_row(*args: Any) -> Any:
        # The event row is written by now, in the same transaction as the runs.
        raise (
            sqlite3.OperationalError("disk I/O error")
            if sqlite
            else psycopg.OperationalError("server closed the connection unexpectedly")
        )

    monkeypatch.setattr(store, "_insert_runs", fail_after_the_event_row)
    delivery = standard({"n": 7}, msg_id="msg_retry_me")

    response = post(client, "payments", delivery)

    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"
    assert "not stored; send it again later" in response.json()["message"]
    assert response.headers["retry-after"] == "5"
    assert hooks.events() == []
    monkeypatch.undo()
    monkeypatch.setenv("PAYMENTS_WEBHOOK_SECRET", SECRET)
    # The sender retries once the database is back: a new delivery, not a duplicate.
    retried = post(client, "payments", delivery)
    assert retried.status_code == 202, retried.text
    assert len(hooks.events()) == 1 and len(hooks.runs()) == 1


@pytest.mark.postgres
def test_the_api_reconnects_after_postgresql_drops_its_connections(
    pg_schema_url: str, secrets: None
) -> None:
    tag = f"rota-test-{uuid.uuid4().hex[:8]}"
    ran: list[Any] = []
    app = make_app(f"{pg_schema_url}&application_name={tag}", ran)
    try:
        with TestClient(create_api(app, db_threads=1)) as c:
            assert post(c, "payments", standard({"n": 1})).status_code == 202
            _terminate_backends(pg_schema_url, tag)  # a failover or a server restart

            failed = post(c, "payments", standard({"n": 2}, msg_id="msg_during"))
            assert failed.status_code == 503, failed.text  # this one found the dead connection
            retried = post(c, "payments", standard({"n": 2}, msg_id="msg_during"))
            assert retried.status_code == 202, retried.text
            assert c.get("/healthz").status_code == 200
        keys = [e.idempotency_key for e in app.store.events()]
        assert len(keys) == 2 and keys[0] == "msg_during"  # stored once, after the retry
    finally:
        app.close()


def _terminate_backends(url: str, application_name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
        ]
        assert pids
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "terminated backends did not exit"
            time.sleep(0.05)


# -- the rest of the API ----------------------------------------------------------------


def test_healthz_answers_when_the_store_does(hooks: Hooks, client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == hooks.store.dialect.name


def test_healthz_is_503_when_the_database_is_unreachable() -> None:
    app = App("postgresql://postgres@127.0.0.1:1/x")
    with TestClient(create_api(app)) as c:
        response = c.get("/healthz")
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert "127.0.0.1:1" not in response.json()["message"]  # no topology to strangers


def test_other_paths_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/nowhere")
    wrong_method = client.get("/hooks/payments")

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert "POST /hooks/{name}" in missing.json()["message"]
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")


# -- a real server ----------------------------------------------------------------------


def test_a_real_uvicorn_server_accepts_deliveries_and_caps_streamed_bodies(hooks: Hooks) -> None:
    server = ApiServer(hooks.app, "127.0.0.1", 0)
    server.bind()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # surfaced below instead of dying silently in the thread
            errors.append(exc)

    thread = threading.Thread(target=serve, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert not errors, errors
            assert time.monotonic() < deadline, "the server did not start within 10s"
            time.sleep(0.01)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            accepted = post(http, "payments", standard({"n": 1}, msg_id="msg_real"))

            _, headers = standard(body=b"", msg_id="msg_real_big")
            too_large = http.post(
                "/hooks/small", content=iter([b"x" * 512] * 8), headers=headers
            )  # 4 KiB, chunked, against a 1 KiB cap
    finally:
        server.stop()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the server did not stop within 15s"
    assert not errors, errors

    assert accepted.status_code == 202, accepted.text
    assert too_large.status_code == 413, too_large.text
    assert too_large.json()["error"] == "too_large"
    [event] = hooks.events()
    assert event.idempotency_key == "msg_real"
    [rejection] = hooks.store.rejections()
    assert (rejection.delivery_id, rejection.status) == ("msg_real_big", 413)
    assert rejection.body_bytes > SMALL  # (that reading stops: the endless-body test above)


# -- rota serve and rota dev ------------------------------------------------------------


def test_serve_refuses_a_port_in_use_with_a_clear_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = CliRunner().invoke(
            cli,
            ["--database-url", sqlite_url, "--app", "cli_app:app", "serve", "--port", str(port)],
        )

    assert result.exit_code == 1, result.output
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "pass --port to use another port" in result.stderr
    assert "Traceback" not in result.output


DEV_APP = """
from rota import App, on_webhook

app = App()


@app.job(trigger=on_webhook("payments", secret_env="PAYMENTS_WEBHOOK_SECRET"))
def reconcile(ctx, payload):
    return {"seen": payload["n"]}
"""


def test_dev_serves_webhooks_next_to_its_worker(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(DEV_APP))
    environ = {
        **os.environ,
        "ROTA_DATABASE_URL": sqlite_url,
        "PAYMENTS_WEBHOOK_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    environ.pop("ROTA_APP", None)
    dev = subprocess.Popen(
        [str(ROTA), "dev", "--port", "0"],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _wait_for_line(dev, r"rota API on (http://\S+)", timeout=30)
        with httpx.Client(base_url=url, timeout=10) as http:
            accepted = post(http, "payments", standard({"n": 5}, msg_id="msg_dev"))
        assert accepted.status_code == 202, accepted.text
        [run_id] = accepted.json()["runs"]
        store = SqlStore(sqlite_url)
        try:
            deadline = time.monotonic() + 30
            while (run := store.get_run(run_id)).state.value != "SUCCEEDED":
                assert time.monotonic() < deadline, f"run still {run.state} after 30s"
                time.sleep(0.05)
        finally:
            store.close()
        assert run.result == {"seen": 5}
        dev.send_signal(signal.SIGTERM)
        out, err = dev.communicate(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()
    assert dev.returncode == 0, err
    assert "SIGTERM: stopping" in err
    assert "stopped: claimed 1, succeeded 1, failed 0" in out


def _wait_for_line(proc: subprocess.Popen[str], pattern: str, *, timeout: float) -> str:
    """The first group of the first stdout line matching `pattern`, read on a thread so the
    wait is bounded even if the process prints nothing."""
    found: list[str] = []
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match.group(1))
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no line matching {pattern!r} within {timeout}s: {seen}"
    assert found, f"the process ended without printing {pattern!r}: {seen}"
    return found[0]
