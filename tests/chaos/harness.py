"""One chaos run: a mixed workload on 3 workers and 2 schedulers (and `rota serve` for the
webhooks), random faults for a while, then a settle and the invariants (invariants.py).

The faults are drawn from a seeded random generator; the seed is printed so that a failing
run can be replayed (`CHAOS_SEED=...`). Kinds:

- `kill_worker`, `kill_scheduler`: SIGKILL one process, restart it a moment later;
- `pg_restart`: `pg_ctl restart -m fast` (PostgreSQL only);
- `pg_crash`: `pg_ctl stop -m immediate`, down for 1-3 s, start (PostgreSQL only);
- `net_drop`: the proxy aborts every connection (PostgreSQL only);
- `net_stall`: one worker's connections stall for longer than the lease, so it comes back a
  zombie holding runs that others took over (PostgreSQL only);
- `net_delay`: every chunk through the proxy waits 20-150 ms, for 3 s (PostgreSQL only).

Recovery time for a fault is the time from its end to the first run that completed after it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import chaos_app
import invariants
from invariants import Db, Expected, Findings
from processes import RotaProcess, rota_env, run_cli
from proxy import FaultyProxy

from rota.errors import ApprovalRefused, StoreUnavailable
from rota.scheduling.webhooks import sign_standard
from rota.storage.approval_records import PENDING
from rota.testing import FakeAnthropicServer, FakeReply, FakeToolCall

PG_FAULTS = ("kill_worker", "kill_scheduler", "pg_restart", "pg_crash", "net_drop", "net_stall")
PG_FAULTS += ("net_delay",)
SQLITE_FAULTS = ("kill_worker", "kill_scheduler")
SECRET_VALUE = "chaos-Vault-Secret-9f31c2e8b7"
HOOK_SECRET = "whsec_" + base64.b64encode(b"chaos-hook-signing-key-0123456789").decode()
STARTUP_S = 120.0  # a loaded 2-core machine takes seconds to import rota in each process
SECRET_KEY = base64.b64encode(b"c" * 32).decode()


@dataclass
class ChaosConfig:
    """How long and how hard to shake; `seed` replays a run."""

    seed: int
    fault_s: float = 30.0  # faults are injected for this long
    settle_s: float = 90.0  # then everything must finish within this
    workers: int = 3
    schedulers: int = 2
    lease_s: float = 2.0
    concurrency: int = 8
    gap_s: tuple[float, float] = (0.5, 2.5)  # between two faults
    faults: tuple[str, ...] = PG_FAULTS
    submit_every_s: float = 0.15
    step_s: str = "0.02,0.3"
    break_fence: bool = False


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    end: float = 0.0


@dataclass
class ChaosResult:
    config: ChaosConfig
    findings: Findings
    faults: list[Fault]
    recovery: dict[str, list[float]] = field(default_factory=dict)

    def table(self) -> str:
        kinds = sorted({f.kind for f in self.faults})
        lines = [f"seed {self.config.seed}: {len(self.faults)} faults in {self.config.fault_s:g}s"]
        for kind in kinds:
            times = self.recovery.get(kind, [])
            shown = (
                f"recovery median {statistics.median(times):.2f}s, max {max(times):.2f}s"
                if times
                else "no run completed after it"
            )
            count = sum(1 for f in self.faults if f.kind == kind)
            lines.append(f"  {kind}: {count} injected; {shown}")
        return "\n".join([*lines, self.findings.summary()])


class TurnServer:
    """The fake Anthropic API: `apply_effect(1)`, `apply_effect(2)`, then the answer, by the
    conversation's turn (so a resumed run gets the right reply)."""

    def __init__(self) -> None:
        self.srv = FakeAnthropicServer(record=False)
        self.srv.handler = self.reply

    def reply(self, body: dict[str, Any]) -> FakeReply:
        turn = 1 + sum(1 for m in body["messages"] if m["role"] == "assistant")
        usage = {"input_tokens": 100 + turn, "output_tokens": 10}
        if turn <= 2:
            call = FakeToolCall("apply_effect", {"n": turn})
            return FakeReply(tool_calls=(call,), usage=usage)
        return FakeReply(text="Both effects applied; done.", usage=usage)


class Chaos:
    """A chaos run on one database: `with Chaos(config, url, tmp) as chaos: chaos.run()`."""

    def __init__(
        self,
        config: ChaosConfig,
        database_url: str,
        side_url: str,
        log_dir: Path,
        cluster: Any = None,
    ) -> None:
        self.config = config
        self.url = database_url
        self.side_url = side_url
        self.log_dir = log_dir
        self.cluster = cluster  # a PrivateCluster, for the PostgreSQL faults
        self.random = random.Random(config.seed)
        self.expected = Expected(secrets=(SECRET_VALUE, HOOK_SECRET))
        self.faults: list[Fault] = []
        self.proxy: FaultyProxy | None = None
        self.model = TurnServer()
        self.workers: list[RotaProcess] = []
        self.schedulers: list[RotaProcess] = []
        self.server: RotaProcess | None = None
        self.port = 0
        self._stop = threading.Event()
        self._submitting = threading.Event()
        self.random_workload = random.Random(config.seed + 1)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # The suite's own App, to enqueue and decide approvals (its agent needs a key to be
        # defined, never used here).
        with mock.patch.dict(os.environ, {"ANTHROPIC_API_KEY": "chaos-test-key"}):
            self.app = chaos_app.make_app(database_url)
        self.rota = Db(_driver_url(database_url))
        self.side = Db(side_url)

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> Chaos:
        print(f"chaos: seed {self.config.seed} (replay with CHAOS_SEED={self.config.seed})")
        self.model.srv.start()
        try:
            self._set_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _set_up(self) -> None:
        self.app.store.schema_version()  # migrated before any process starts
        invariants.install_checkpoint_log(self.rota)
        side = chaos_app.SideSystem(self.side_url)
        side.install()
        side.close()
        env = self._env(self.url)
        run_cli(
            env,
            "secrets",
            "set",
            chaos_app.SECRET_NAME,
            "--grant",
            chaos_app.SECRET_PRINCIPAL,
            stdin=SECRET_VALUE,
        )
        if self.cluster is not None:
            self.proxy = FaultyProxy(self.cluster.port)
        self._start_processes()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for process in self._processes():
            process.close()
        if self.proxy is not None:
            self.proxy.close()
        self.model.srv.stop()
        self.app.close()
        self.rota.close()
        self.side.close()

    def _env(self, url: str) -> dict[str, str]:
        return rota_env(
            url,
            {
                chaos_app.SIDE_URL_ENV: self.side_url,
                chaos_app.MODEL_URL_ENV: self.model.srv.base_url,
                chaos_app.HOOK_SECRET_ENV: HOOK_SECRET,
                chaos_app.STEP_S_ENV: self.config.step_s,
                chaos_app.BREAK_FENCE_ENV: "1" if self.config.break_fence else "0",
                "ANTHROPIC_API_KEY": "chaos-test-key",
                "ROTA_SECRET_KEY": SECRET_KEY,
            },
        )

    def _url_for(self, name: str) -> str:
        """The process's own way to the database: through its proxy listener on PostgreSQL."""
        if self.proxy is None:
            return self.url
        port = self.proxy.listen(name)
        return self.url.replace(f":{self.cluster.port}/", f":{port}/")

    def _start_processes(self) -> None:
        lease = ["--lease", str(self.config.lease_s), "--poll", "0.2", "--grace", "1"]
        for i in range(self.config.workers):
            name = f"worker-{i}"
            args = ["worker", "--concurrency", str(self.config.concurrency), *lease]
            self.workers.append(self._process(name, args, "rota worker "))
        for i in range(self.config.schedulers):
            name = f"scheduler-{i}"
            args = ["scheduler", "--max-sleep", "0.2"]
            self.schedulers.append(self._process(name, args, "rota scheduler "))
        self.port = _free_port()
        self.server = self._process("serve", ["serve", "--port", str(self.port)], "rota API on ")
        for process in self._processes():
            process.start()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until every process is up (started again if it died), or STARTUP_S passes."""
        deadline = time.monotonic() + STARTUP_S
        while not all(p.ready for p in self._processes()):
            for process in self._processes():
                if not process.alive:
                    process.start()
            if time.monotonic() > deadline:
                late = [p.name for p in self._processes() if not p.ready]
                raise AssertionError(f"not up within {STARTUP_S:g}s: {late}")
            time.sleep(0.2)

    def _process(self, name: str, args: list[str], banner: str) -> RotaProcess:
        env = self._env(self._url_for(name))
        return RotaProcess(name, args, env, self.log_dir / f"{name}.log", banner)

    def _processes(self) -> list[RotaProcess]:
        return [*self.workers, *self.schedulers, *([self.server] if self.server else [])]

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> ChaosResult:
        """Workload and faults for fault_s, then settle and check; returns the result."""
        self._submitting.set()
        for target in (self._submit, self._deliver_webhooks, self._approve):
            thread = threading.Thread(target=self._loop(target), daemon=True)
            thread.start()
            self._threads.append(thread)
        until = time.monotonic() + self.config.fault_s
        time.sleep(1.0)  # the first runs complete before the first fault
        first_round = True
        while first_round or time.monotonic() < until:
            # Every kind once a round, in a seeded order. The first round always completes,
            # so a short run meets every kind however long the slow faults took.
            for kind in self.random.sample(self.config.faults, len(self.config.faults)):
                if not first_round and time.monotonic() >= until:
                    break
                self._inject(kind)
                time.sleep(self.random.uniform(*self.config.gap_s))
            first_round = False
        self._settle()
        logs = {p.name: p.text() for p in self._processes()}
        findings = invariants.check_all(self.rota, self.side, self.expected, logs)
        findings.add("audit chain broken", self._audit())
        findings.counts["faults"] = len(self.faults)
        result = ChaosResult(self.config, findings, self.faults, self._recovery())
        print(result.table())
        return result

    def _loop(self, body: Callable[[int], None]) -> Callable[[], None]:
        def loop() -> None:
            n = 0
            while not self._stop.is_set():
                body(n)
                n += 1

        return loop

    def _retry(self, what: Callable[[], Any]) -> Any:
        """The test's own call to the database: retried while it is away."""
        while True:
            try:
                return what()
            except StoreUnavailable:
                if self._stop.is_set():
                    return None
                time.sleep(0.2)

    # -- the workload ------------------------------------------------------------------------

    def _submit(self, n: int) -> None:
        """One run a tick, by idempotency key: retried with the same key, so stored once."""
        if self._submitting.is_set():
            kind = self.random_workload.choices(
                ["chaos_flow", chaos_app.AGENT, "chaos_approval", "chaos_secret"],
                weights=[10, 3, 2, 1],
            )[0]
            key = f"{kind}-{n}"
            with self._lock:
                self.expected.runs[(kind, key)] = f"submitted {kind} #{n}"
            payload: Any = "Apply the two effects." if kind == chaos_app.AGENT else n
            self._retry(lambda: self.app.run_now(kind, payload, idempotency_key=key))
        time.sleep(self.config.submit_every_s)

    def _deliver_webhooks(self, n: int) -> None:
        """One signed delivery; resent with the same id until answered 2xx (and a few
        accepted ones are resent once more, as senders do)."""
        if not self._submitting.is_set():
            time.sleep(0.1)
            return
        delivery = f"d-{n}"
        body = json.dumps({"n": n}).encode()
        resend = n % 7 == 0
        while not self._stop.is_set():
            if self._post(delivery, body):
                with self._lock:
                    self.expected.webhooks.add(delivery)
                if not resend:
                    break
                resend = False
            time.sleep(0.2)
        time.sleep(0.3)

    def _post(self, delivery: str, body: bytes) -> bool:
        headers = {
            **sign_standard(HOOK_SECRET, delivery, time.time(), body),
            "content-type": "application/json",
        }
        url = f"http://127.0.0.1:{self.port}/hooks/{chaos_app.HOOK}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError):  # 503 during an outage, or restarting
            return False

    def _approve(self, n: int) -> None:
        """The approvers' script: approve every pending request."""
        pending = self._retry(lambda: self.app.store.approvals(statuses=(PENDING,)))
        for request in pending or []:
            with contextlib.suppress(ApprovalRefused, StoreUnavailable):
                self.app.store.decide_approval(
                    request.id, chaos_app.APPROVER, True, "chaos script", time.time(), via="cli"
                )
        time.sleep(0.3)

    # -- faults ------------------------------------------------------------------------------

    def _inject(self, kind: str) -> None:
        fault = Fault(kind, "", time.time())
        pick = self.random
        if kind in ("kill_worker", "kill_scheduler"):
            process = pick.choice(self.workers if kind == "kill_worker" else self.schedulers)
            fault.target = process.name
            process.kill()
            time.sleep(pick.uniform(0.2, 1.0))
            process.start()
        elif kind == "pg_restart":
            self.cluster.restart_fast()
        elif kind == "pg_crash":
            self.cluster.stop_immediate()
            time.sleep(pick.uniform(1.0, 3.0))
            self.cluster.start()
        elif kind == "net_drop":
            assert self.proxy is not None
            fault.target = f"{self.proxy.drop()} connections"
        elif kind == "net_stall":
            assert self.proxy is not None
            worker = pick.choice(self.workers)
            fault.target = worker.name
            stall = self.config.lease_s + pick.uniform(0.5, 1.5)
            self.proxy.stall(stall, [worker.name])
            time.sleep(stall)
        elif kind == "net_delay":
            assert self.proxy is not None
            delay = pick.uniform(0.02, 0.15)
            fault.target = f"{delay * 1000:.0f} ms a chunk"
            self.proxy.delay(delay, 3.0)
            time.sleep(3.0)
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault.end = time.time()
        self.faults.append(fault)
        target = f" {fault.target}" if fault.target else ""
        print(f"chaos: {kind}{target} ({fault.end - fault.start:.1f}s)")

    # -- settle and measure ------------------------------------------------------------------

    def _settle(self) -> None:
        """Faults over: every process up, submissions stopped, schedulers stopped after a few
        more ticks; then wait until no run is left unfinished, or settle_s passes."""
        self._wait_ready()
        settled_at = time.time()
        self._submitting.clear()
        # A few more ticks, decided once every scheduler is back, before they stop.
        self._retry(lambda: self._wait_for_ticks_after(settled_at + 2))
        for scheduler in self.schedulers:
            scheduler.stop()
        deadline = time.monotonic() + self.config.settle_s
        while time.monotonic() < deadline:
            left = self._retry(
                lambda: self.rota.query(
                    "SELECT count(*) FROM rota_runs WHERE state NOT IN (%s, %s, %s)",
                    invariants.FINAL,
                )
            )
            if left and left[0][0] == 0:
                break
            time.sleep(0.5)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _wait_for_ticks_after(self, at: float) -> None:
        deadline = time.monotonic() + self.config.settle_s
        query = "SELECT count(*) FROM rota_ticks WHERE schedule = %s AND fire_at > %s"
        while self.rota.query(query, ("chaos_tick", at))[0][0] == 0:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no tick fired after the faults within {self.config.settle_s:g}s"
                )
            time.sleep(0.2)

    def _audit(self) -> Iterator[str]:
        try:
            run_cli(self._env(self.url), "audit", "verify")
        except AssertionError as exc:
            yield str(exc)

    def _recovery(self) -> dict[str, list[float]]:
        finished = sorted(
            float(at)
            for (at,) in self.rota.query(
                "SELECT finished_at FROM rota_runs WHERE state = 'SUCCEEDED'"
            )
        )
        recovery: dict[str, list[float]] = {}
        for fault in self.faults:
            after = next((at for at in finished if at > fault.end), None)
            if after is not None:
                recovery.setdefault(fault.kind, []).append(after - fault.end)
        return recovery


def _driver_url(url: str) -> str:
    """The URL for a direct connection of the test's own (sqlite3 wants a path)."""
    return url.removeprefix("sqlite:///")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_from_env() -> int:
    """CHAOS_SEED when set, else a fresh one (printed by the run)."""
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
