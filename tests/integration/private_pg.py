"""A PostgreSQL cluster of a test's own, for tests that restart or kill their database.

The shared server (ROTA_TEST_POSTGRES_URL) must never be restarted under other tests, so
`private_cluster()` makes a throwaway one: `initdb` into a temporary folder, `pg_ctl` on a
free loopback port, as the `postgres` OS user when the tests run as root (PostgreSQL refuses
to run as root). fsync is off (these clusters hold nothing worth keeping); commits stay
synchronous, so a crash of the server process (`stop -m immediate`) loses no acknowledged
commit.

Without PostgreSQL binaries, or when the cluster cannot start, the test skips with the
reason, or fails when ROTA_REQUIRE_POSTGRES is set (CI).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"
COMMAND_TIMEOUT_S = 60


class ClusterUnavailable(Exception):
    """The private cluster could not be made or started; the message says why."""


class PrivateCluster:
    """One throwaway PostgreSQL cluster: start, restart and stop it at will."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.logfile = root / "server.log"
        self.port = port

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        # No fsync: the data is thrown away, and a server process that stops at once (not
        # the machine) leaves its WAL in the OS's cache, whence recovery replays it. Commits
        # stay synchronous: an acknowledged commit must survive `stop -m immediate`.
        settings = (
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.root}'\n"
            "fsync = off\nfull_page_writes = off\n"
            "max_connections = 60\n"
        )
        conf = self.data / "postgresql.conf"
        self._as_owner(["sh", "-c", f"cat >> '{conf}'"], stdin=settings)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "start")

    def restart_fast(self) -> None:
        """A clean restart: sessions are terminated ("terminating connection due to
        administrator command"), then the server comes back."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-m", "fast", "-w", "restart"
        )

    def stop_immediate(self) -> None:
        """Like a crash: the server stops at once and recovers from its WAL on start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(ClusterUnavailable):
            self.stop_immediate()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no server log: {exc})"

    def _run(self, program: str, *args: str) -> None:
        self._as_owner([str(self.bindir / program), *args])

    def _as_owner(self, argv: list[str], stdin: str | None = None) -> None:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterUnavailable(f"{' '.join(argv)}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            raise ClusterUnavailable(
                f"{' '.join(argv)} exited {done.returncode}: {output}\n{self.log_tail()}"
            )


def _bindir() -> Path:
    found = sorted(
        (Path(d) for d in glob.glob(PG_BIN_GLOB) if (Path(d) / "pg_ctl").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if not found:
        raise ClusterUnavailable(f"no PostgreSQL binaries (initdb, pg_ctl) in {PG_BIN_GLOB}")
    return found[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_root() -> Path:
    # In the system temp folder (world-traversable), owned by the cluster's OS user.
    root = Path(tempfile.mkdtemp(prefix="rota-private-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(root, OS_USER, OS_USER)
        except (LookupError, OSError) as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise ClusterUnavailable(f"cannot hand {root} to OS user {OS_USER!r}: {exc}") from exc
    return root


def start_cluster() -> PrivateCluster:
    """A new cluster, initialised and running; raises ClusterUnavailable saying why not."""
    cluster = PrivateCluster(_bindir(), _make_root(), _free_port())
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A running private cluster for the test, destroyed afterwards. Skips (or, under
    ROTA_REQUIRE_POSTGRES, fails) when it cannot be started."""
    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        message = f"cannot start a private PostgreSQL cluster: {exc}"
        if os.environ.get("ROTA_REQUIRE_POSTGRES"):
            pytest.fail(message + " -- ROTA_REQUIRE_POSTGRES is set, so this is a failure")
        pytest.skip(message)
    try:
        yield cluster
    finally:
        cluster.destroy()
