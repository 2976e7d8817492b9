"""rota behind PgBouncer in transaction pooling mode (docs/scaling.md), against a real
PgBouncer started for these tests on a free port, in front of the test PostgreSQL.

What works with `?pgbouncer=transaction` on the URL: claims (SKIP LOCKED), leases, steps,
audit appends (transaction-scoped advisory locks), NOTIFY; all with several
worker threads sharing a pool of 3 server connections. What does not: server-side prepared
statements (psycopg prepares a statement after 5 runs; the next transaction may land on
another server connection: shown below without the flag), and LISTEN (its server connection
returns to the pool at once), which goes to $ROTA_LISTEN_DATABASE_URL instead.

PgBouncer comes from Debian (`apt-get install pgbouncer`); without it these tests skip, except
under CI=true, where .ci/run installs it and a missing one fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rota import App, RunState
from rota.errors import ConfigError, DatabaseError
from rota.storage import SqlStore
from rota.storage.dialects import LISTEN_URL_ENV, WAKE_CHANNEL
from rota.storage.urls import parse

# As tests/conftest.py reads it ('conftest' is not imported: which module that name means
# depends on what pytest collected last).
PG_URL = os.environ.get("ROTA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
CONFIG = """\
[databases]
* = host={host} port={port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/users.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[str]:
    """host:port of a PgBouncer in transaction mode in front of the test server."""
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed: .ci/run installs it under CI=true")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    target = psycopg.conninfo.conninfo_to_dict(PG_URL)
    folder = Path(tempfile.mkdtemp(prefix="rota-pgbouncer-"))
    port = _free_port()
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        CONFIG.format(
            host=target.get("host", "127.0.0.1"),
            port=target.get("port", 5432),
            listen=port,
            dir=folder,
        )
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, process, folder / "pgbouncer.log")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text() if log.exists() else "(no log)"
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {said}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("pgbouncer did not start listening in 20 s")


@pytest.fixture
def database(pg_schema_url: str, pgbouncer: str) -> Iterator[tuple[str, str]]:
    """A scratch database: (its URL through PgBouncer, its direct URL). pg_schema_url first:
    it skips, or under ROTA_REQUIRE_POSTGRES fails, when PostgreSQL is not there."""
    name = f"rota_pgb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    user = psycopg.conninfo.conninfo_to_dict(PG_URL).get("user", "postgres")
    direct = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield f"postgresql://{user}@{pgbouncer}/{name}", direct
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _queries(url: str, **options: Any) -> list[str]:
    """8 connections running the same statement 50 times each; the errors they met."""
    errors: list[str] = []

    def client() -> None:
        try:
            with psycopg.connect(url, autocommit=True, **options) as conn:
                for n in range(50):
                    conn.execute("SELECT %s::int + 1", (n,)).fetchone()
        except psycopg.Error as exc:
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_prepared_statements_break_behind_transaction_pooling_unless_disabled(
    database: tuple[str, str],
) -> None:
    pooled, _ = database
    assert _queries(pooled), "psycopg's automatic prepared statements should collide"
    assert _queries(pooled, prepare_threshold=None) == []
    # What ?pgbouncer=transaction does to rota's connections:
    store = SqlStore(pooled + "?pgbouncer=transaction")
    try:
        assert store.conn().raw.prepare_threshold is None
    finally:
        store.close()


def test_runs_steps_and_audit_work_through_pgbouncer(database: tuple[str, str]) -> None:
    pooled, _ = database
    app = App(pooled + "?pgbouncer=transaction")

    @app.job
    def add(ctx: Any, n: int) -> int:
        return n + 1

    @app.workflow
    async def pipeline(ctx: Any, n: int) -> int:
        first = await ctx.step("one", lambda: n * 2)
        return int(await ctx.step("two", lambda: first + 1))

    try:
        handles = [app.run_now("add", n) for n in range(40)]
        handles += [app.run_now("pipeline", n) for n in range(20)]
        app.drain(concurrency=8)  # 8 run slots and 4 database threads over 3 server connections
        assert [h.get().state for h in handles] == [RunState.SUCCEEDED] * 60
        assert [h.result() for h in handles[:3]] == [1, 2, 3]
        assert [h.result() for h in handles[40:43]] == [1, 3, 5]
        app.store.audit("rota:test", "run.requested")
    finally:
        app.close()
    # Every run's start was audited through the pool: the chain is whole.
    store = SqlStore(pooled + "?pgbouncer=transaction")
    try:
        from_store = store.audit_records(limit=1000)
        assert len(from_store) >= 61
    finally:
        store.close()


def test_listen_goes_to_the_direct_url(
    database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pooled, direct = database
    store = SqlStore(pooled + "?pgbouncer=transaction")
    try:
        store.migrate()
        monkeypatch.delenv(LISTEN_URL_ENV, raising=False)
        with pytest.raises(DatabaseError, match=f"set {LISTEN_URL_ENV} to a direct"):
            store.dialect.listen()  # type: ignore[attr-defined]
        monkeypatch.setenv(LISTEN_URL_ENV, direct)
        listener = store.dialect.listen()  # type: ignore[attr-defined]
        with listener:
            with store.tx() as conn:  # NOTIFY through the pool is delivered at commit
                store.dialect.notify(conn)
            heard = [n.channel for n in listener.notifies(timeout=5.0, stop_after=1)]
        assert heard == [WAKE_CHANNEL]
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["statement", "", "transaction&pgbouncer=session"])
def test_a_bad_pool_mode_is_refused_clearly(mode: str) -> None:
    with pytest.raises(ConfigError, match="pgbouncer= must be one of transaction, session"):
        parse(f"postgresql://postgres@127.0.0.1:6432/rota?pgbouncer={mode}")


def test_the_pool_parameter_is_not_passed_to_libpq() -> None:
    url = parse("postgresql://u@h:6432/rota?sslmode=disable&pgbouncer=transaction")
    assert (url.target, url.pool) == ("postgresql://u@h:6432/rota?sslmode=disable", "transaction")
    assert parse("postgresql://u@h/rota").pool is None
