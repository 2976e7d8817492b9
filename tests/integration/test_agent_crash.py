"""Acceptance: an agent run killed with SIGKILL after its second model call resumes and makes
exactly the remaining calls (the fake server counts them).

The test process runs a FakeAnthropicServer whose handler answers by conversation turn
(derived from the request's messages, so a resumed run gets the right reply): a call of the
`record_step` tool on turns 1 and 2, the final answer on turn 3. A worker subprocess
(tests/integration/agent_crash_app.py) runs the agent; its tool's execution for step 2
records itself and then blocks, so the kill lands at a known point: after the server
answered model call 2 and rota checkpointed it, before the tool call completed. The test
SIGKILLs that worker, starts a fresh one and waits for the run to succeed. Then:

- the server received exactly 3 model calls: 2 before the kill and 1 after;
- the completed tool call (step 1) ran exactly once; the interrupted one (step 2) ran again
  in the new worker with the same idempotency key (at-least-once for interrupted calls);
- the run's result is the final answer;
- the usage stored for the run is that of the 3 responses the server sent, each once.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from worker_procs import WorkerProcesses as Workers

from rota import App
from rota.testing import FakeAnthropicServer, FakeReply, FakeToolCall

HERE = Path(__file__).resolve().parent
APP_FILE = HERE / "agent_crash_app.py"
FINAL_ANSWER = "Both steps are recorded; done."
DEADLINE_S = 60.0  # for any single wait


def _load_app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rota_agent_crash_app", APP_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_app = _load_app_module()


class TurnServer:
    """The fake Anthropic API: replies by turn, and remembers what it served."""

    def __init__(self) -> None:
        self.srv = FakeAnthropicServer()
        self.srv.handler = self.reply
        self.served: list[tuple[int, dict[str, int]]] = []  # (turn, usage) per response
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    def reply(self, body: dict[str, Any]) -> FakeReply:
        turn = 1 + sum(1 for m in body["messages"] if m["role"] == "assistant")
        n = next(self._serial)
        # Distinct numbers per response, so that each stored usage names its response.
        usage = {
            "input_tokens": 1000 * n + turn,
            "output_tokens": 10 * n,
            "cache_read_input_tokens": 100 * n,
            "cache_creation_input_tokens": n,
        }
        with self._lock:
            self.served.append((turn, usage))
        if turn <= 2:
            call = FakeToolCall("record_step", {"step": turn}, id=f"toolu_turn{turn}_{n}")
            return FakeReply(tool_calls=(call,), usage=usage)
        return FakeReply(text=FINAL_ANSWER, usage=usage)


def _wait_for(what: str, ready: Callable[[], Any], workers: Workers) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = ready()
        if value:
            return value
        for proc in workers.live:
            if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                pytest.fail(f"worker {proc.pid} exited ({proc.returncode})\n{workers.tail()}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {DEADLINE_S:g}s waiting for {what}\n{workers.tail()}")
        time.sleep(0.02)


@pytest.fixture
def setup(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[App, Any, TurnServer, Workers]]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    server = TurnServer()
    server.srv.start()
    app = crash_app.make_app(database_url, base_url=server.srv.base_url)
    app.store  # noqa: B018 -- opening the store migrates it
    log = crash_app.ToolLog(database_url)
    log.install()
    workers = Workers(
        APP_FILE,
        {
            **os.environ,
            "ROTA_DATABASE_URL": database_url,
            crash_app.BASE_URL_ENV: server.srv.base_url,
            "ANTHROPIC_API_KEY": "test",
        },
        tmp_path,
    )
    try:
        yield app, log, server, workers
    finally:
        workers.cleanup()
        log.close()
        app.close()
        server.srv.stop()


@pytest.mark.slow
def test_sigkilled_agent_run_resumes_with_exactly_the_remaining_model_calls(
    setup: tuple[App, Any, TurnServer, Workers],
) -> None:
    app, log, server, workers = setup
    handle = app.run_now(crash_app.AGENT, "Record the two steps.")

    first = workers.start(**{crash_app.HOLD_ENV: "1"})
    # The tool's execution for step 2 begins only after model call 2 was answered and
    # checkpointed; it then blocks, so nothing else happens until the kill.
    _wait_for(
        "the first worker to begin tool step 2",
        lambda: any(step == 2 and pid == first.pid for _, step, pid, _ in log.executions()),
        workers,
    )
    calls_before_kill = server.srv.calls
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=DEADLINE_S)
    assert calls_before_kill == 2, workers.tail()

    second = workers.start(**{crash_app.HOLD_ENV: "0"})
    run = handle.wait(timeout=DEADLINE_S)
    assert run.state.value == "SUCCEEDED", (run.state, run.error, workers.tail())

    # -- the model: exactly the remaining call was made ------------------------------------
    assert server.srv.calls == 3, workers.tail()
    assert [turn for turn, _ in server.served] == [1, 2, 3]
    # The resumed run sent the whole conversation: both tool results, from the checkpoints.
    last = server.srv.requests[2]["messages"]
    results = [
        block
        for message in last
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert [r["tool_use_id"] for r in results] == ["toolu_turn1_1", "toolu_turn2_2"]

    # -- the tools: the completed call ran once, the interrupted one again, same key -------
    executions = [(step, pid, key) for run_id, step, pid, key in log.executions()]
    assert all(run_id == handle.id for run_id, *_ in log.executions())
    assert [(s, p) for s, p, _ in executions] == [
        (1, first.pid),
        (2, first.pid),
        (2, second.pid),
    ]
    assert executions[0][2] == f"{handle.id}:tool:record_step"
    assert executions[1][2] == executions[2][2] == f"{handle.id}:tool:record_step#2"

    # -- the result and the stored usage -------------------------------------------------
    assert run.result == FINAL_ANSWER
    assert run.attempt >= 2 or run.reclaims >= 1  # it really was resumed
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert sorted(steps) == [
        "model#1",
        "model#2",
        "model#3",
        "tool:record_step",
        "tool:record_step#2",
    ]
    assert all(s.state == "SUCCEEDED" for s in steps.values())
    stored = [steps[f"model#{n}"].result["usage"] for n in (1, 2, 3)]
    sent = [usage for _, usage in server.served]
    assert [
        {
            "input_tokens": u["input_tokens"],
            "output_tokens": u["output_tokens"],
            "cache_read_input_tokens": u["cache_read_tokens"],
            "cache_creation_input_tokens": u["cache_write_tokens"],
        }
        for u in stored
    ] == sent  # each stored response is one the server sent, in order, each once
    assert sum(u["requests"] for u in stored) == 3
    assert sum(u["input_tokens"] for u in stored) == sum(u["input_tokens"] for u in sent)
