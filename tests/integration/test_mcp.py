"""MCP servers as tool sources, against a real server (`mcp_servers/calc.py`, written with
the SDK's MCPServer) over stdio (a subprocess per run) and streamable HTTP (one server
process for the module, on a port the system picks).

Each test drives an agent with a scripted model and checks what the model was shown (the
server's tool schemas, the tool results, errors as error results), what was recorded for a
durable run, and that no server process outlives the run that started it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rota import Agent, AgentResult, App, ConfigError, RunState, ToolContext, tool
from rota.agents.mcp import (
    MCPServer,
    MCPServerError,
    MCPTool,
    mcp_http,
    mcp_stdio,
    render_result,
)
from rota.agents.tools import Tool, ToolDenied
from rota.agents.types import ModelRequest, ToolResult
from rota.errors import RunInterrupted
from rota.identity.principals import Principal, make_principal
from rota.testing import ScriptedModel, call, say

CALC = Path(__file__).parent / "mcp_servers" / "calc.py"


def calc_stdio(**options: Any) -> MCPServer:
    return mcp_stdio(sys.executable, [str(CALC)], **options)


@pytest.fixture(scope="module")
def calc_url() -> Iterator[str]:
    """The calc server over streamable HTTP, for the whole module."""
    process = subprocess.Popen(
        [sys.executable, str(CALC), "http"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()))
    reader.start()
    reader.join(timeout=30)
    try:
        if not lines or not lines[0].startswith("PORT "):
            pytest.fail(f"the HTTP MCP server did not start: {lines!r}")
        yield f"http://127.0.0.1:{int(lines[0].split()[1])}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        stdout.close()


@pytest.fixture(params=["stdio", "http"])
def calc(request: pytest.FixtureRequest) -> Callable[..., MCPServer]:
    """Makes the calc server as a tool source, over each transport."""
    if request.param == "stdio":
        return calc_stdio
    url = request.getfixturevalue("calc_url")
    return lambda **options: mcp_http(url, headers={"X-Test": "1"}, **options)


def children() -> set[int]:
    """Processes whose parent is this one, exited-but-unreaped ones included (Linux; empty
    where there is no /proc)."""
    found: set[int] = set()
    if not Path("/proc/self/stat").exists():
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def run(agent: Agent, task: Any = "go", principal: Principal | None = None) -> AgentResult:
    """`agent.run(task)`, checking inside the event loop, as the run returns or raises,
    that every server process it started has exited and been reaped (after the loop,
    asyncio.run's own clean-up would hide a session left open)."""

    async def checked() -> AgentResult:
        before = children()
        try:
            return await agent.run(task, principal=principal)
        finally:
            assert children() == before, "a server process outlived its run"

    return asyncio.run(checked())


def results(request: ModelRequest) -> tuple[ToolResult, ...]:
    return request.messages[-1].tool_results


# -- listing and calling ---------------------------------------------------------------------


def test_the_model_sees_the_servers_tools_and_their_results(
    calc: Callable[..., MCPServer],
) -> None:
    model = ScriptedModel(
        "mcp-calc",
        script=[
            call("add", a=2, b=3) + call("fail", reason="testing") + call("add", a="x", b=1),
            say("2 + 3 = 5"),
        ],
    )
    agent = Agent("calculator", model, "Add numbers.", tools=[calc()])

    result = run(agent, "what is 2 + 3?")

    assert (result.reason, result.output) == ("succeeded", "2 + 3 = 5")
    specs = {t.name: t for t in model.requests[0].tools}
    assert set(specs) == {"add", "fail", "slow", "crash", "pid", "record", "whoami"}
    assert specs["add"].description == "Add two whole numbers."
    assert specs["add"].input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }
    added, failed, invalid = results(model.requests[1])
    assert (added.content, added.is_error) == ("5", False)
    assert failed.is_error and "fail was called: testing" in failed.content
    assert invalid.is_error and "validation error" in invalid.content  # the server validates
    assert agent.tools == {}  # the definition is unchanged: tools are listed per run


def test_a_python_tool_and_a_server_tool_with_one_name_keep_apart() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add, locally."""
        return 1000 + a + b

    model = ScriptedModel(
        "mcp-clash", script=[call("add", a=1, b=2) + call("calc__add", a=1, b=2), say("ok")]
    )
    agent = Agent("clash", model, "Add.", tools=[add, calc_stdio(include=["add", "pid"])])

    run(agent, "go")

    assert [t.name for t in model.requests[0].tools] == ["add", "calc__add", "pid"]
    local, remote = results(model.requests[1])
    assert (local.content, remote.content) == ("1003", "3")


def test_two_sources_with_one_name_must_be_told_apart() -> None:
    model = ScriptedModel("mcp-twice", script=[call("calc__pid") + call("other__pid"), say("ok")])
    twice = Agent("twice", model, "Go.", tools=[calc_stdio(), calc_stdio()])
    with pytest.raises(ConfigError, match=r"'calc__add' is taken; give the source another name"):
        run(twice, "go")

    named = Agent(
        "named", model, "Go.", tools=[calc_stdio(include=["pid"]), calc_stdio(name="other")]
    )
    run(named, "go")
    assert [t.name for t in model.requests[0].tools][:3] == ["calc__pid", "add", "fail"]
    first, second = results(model.requests[1])
    assert first.content.isdigit() and second.content.isdigit()
    assert first.content != second.content  # two servers, two processes


def test_include_names_the_tools_to_keep_and_a_missing_one_fails_clearly() -> None:
    model = ScriptedModel("mcp-include", script=[say("ok")])
    run(Agent("a", model, "Go.", tools=[calc_stdio(include=lambda n: n == "add")]))
    assert [t.name for t in model.requests[0].tools] == ["add"]

    missing = Agent("b", model, "Go.", tools=[calc_stdio(include=["add", "mul"])])
    with pytest.raises(MCPServerError, match=r"has no tool named 'mul' .*its tools are: add, "):
        run(missing)


def test_tools_carry_the_sources_scopes_and_guards_still_decide(tmp_path: Path) -> None:
    seen: list[tuple[str, tuple[str, ...], dict[str, Any]]] = []

    def deny_record(t: Tool, arguments: dict[str, Any], ctx: ToolContext[Any]) -> None:
        seen.append((t.name, t.scopes, arguments))
        if t.name == "record":
            raise ToolDenied("recording is not allowed")

    log = tmp_path / "calls.log"
    model = ScriptedModel(
        "mcp-guarded", script=[call("record", path=str(log), text="x") + call("pid"), say("ok")]
    )
    source = calc_stdio(scopes=["calc:use"], requires_approval=True)
    agent = Agent("guarded", model, "Go.", tools=[source], tool_guards=[deny_record])

    run(agent, "go", principal=make_principal("calc-user", scopes=["calc:use"]))

    denied, gated = results(model.requests[1])
    assert denied.is_error and "recording is not allowed" in denied.content
    # requires_approval is carried too, and enforced: an in-memory run cannot wait for a human
    assert gated.is_error and "needs a human's approval" in gated.content
    assert not log.exists()  # the guard refused before the server was called
    assert seen == [
        ("record", ("calc:use",), {"path": str(log), "text": "x"}),
        ("pid", ("calc:use",), {}),
    ]


# -- sessions: one per run, always closed --------------------------------------------------


def test_each_run_has_its_own_server_process_and_it_is_gone_when_the_run_ends() -> None:
    model = ScriptedModel("mcp-pid", script=[call("pid"), say("ok")])
    agent = Agent("pids", model, "Go.", tools=[calc_stdio()])

    async def both() -> list[str]:
        before = children()
        runs = await asyncio.gather(agent.run("one"), agent.run("two"))
        assert children() == before
        return [r.messages[2].tool_results[0].content for r in runs]

    pids = [int(p) for p in asyncio.run(both())]

    assert len(set(pids)) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_session_is_closed_when_the_run_fails() -> None:
    def reply(request: ModelRequest, turn: int) -> Any:
        if turn == 2:
            raise RuntimeError("a bug in the model adapter")
        return call("pid")

    agent = Agent("failing", ScriptedModel("mcp-bug", fn=reply), "Go.", tools=[calc_stdio()])
    with pytest.raises(RuntimeError, match="a bug in the model adapter"):
        run(agent, "go")


def test_a_call_that_times_out_is_an_error_result_and_the_run_goes_on() -> None:
    model = ScriptedModel(
        "mcp-slow", script=[call("slow", seconds=5) + call("add", a=1, b=1), say("gave up on slow")]
    )
    agent = Agent("slowpoke", model, "Go.", tools=[calc_stdio(timeout=0.3)])

    result = run(agent, "go")

    assert result.output == "gave up on slow"
    slow, added = results(model.requests[1])
    assert slow.is_error
    assert slow.content == "tool 'slow' (MCP server calc) timed out after 0.3s"
    assert (added.content, added.is_error) == ("2", False)  # the session still works


def test_a_server_that_crashes_mid_run_gives_error_results(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ScriptedModel(
        "mcp-crash", script=[call("crash"), call("add", a=1, b=2), say("the server is gone")]
    )
    agent = Agent("crashy", model, "Go.", tools=[calc_stdio()])

    result = run(agent, "go")

    assert result.output == "the server is gone"
    (crashed,) = results(model.requests[1])
    (after,) = results(model.requests[2])
    for r in (crashed, after):
        assert r.is_error
        assert "(MCP server calc) failed: the server stopped" in r.content
        assert "crashing on purpose" not in r.content  # stderr is for the operator
    (warning,) = [r for r in caplog.records if r.name == "rota.agents.mcp"]
    assert warning.levelname == "WARNING"
    assert "stopped during the run: it closed the connection before answering" in (
        warning.getMessage()
    )
    assert warning.getMessage().endswith("its stderr ends with:\ncalc: crashing on purpose")


def test_the_agents_timeout_cancels_a_call_in_flight_and_the_session_still_closes() -> None:
    model = ScriptedModel("mcp-stuck", script=[call("slow", seconds=30), say("never")])
    agent = Agent("stuck", model, "Go.", tools=[calc_stdio()], timeout=0.5)

    result = run(agent, "go")

    assert (result.reason, result.error) == ("timeout", "no accepted answer within 0.5s")
    assert model.calls == 1


# -- servers that cannot start -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            lambda: mcp_stdio(sys.executable, ["-c", "import sys; sys.exit('no config file')"]),
            r"could not be started: it closed the connection before answering; its stderr "
            r"ends with:\nno config file",
        ),
        (
            lambda: mcp_stdio("/no/such/mcp-server"),
            r"could not be started: FileNotFoundError: .*/no/such/mcp-server",
        ),
        (
            lambda: mcp_stdio(
                sys.executable, ["-c", "import time; time.sleep(60)"], connect_timeout=0.5
            ),
            r"did not start and list its tools within 0.5s \(connect_timeout\)",
        ),
    ],
    ids=["exits", "no-such-command", "never-answers"],
)
def test_a_server_that_cannot_start_fails_the_run_clearly(
    source: Callable[[], MCPServer], message: str
) -> None:
    model = ScriptedModel("mcp-never", script=[say("unreachable")])
    agent = Agent("stranded", model, "Go.", tools=[source()])

    with pytest.raises(MCPServerError, match=message):
        run(agent, "go")
    assert model.calls == 0


def test_an_http_server_that_is_not_there_fails_the_run_clearly() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "Bearer do-not-print"
    source = mcp_http(f"http://user:pw@127.0.0.1:{port}/mcp?token=t", {"Authorization": secret})
    agent = Agent("stranded", ScriptedModel("mcp-nohttp", script=[say("x")]), "Go.", tools=[source])

    with pytest.raises(
        MCPServerError,
        match=rf"MCP server http://127.0.0.1:{port}/mcp could not "
        r"be reached: ConnectError",
    ) as failure:
        run(agent, "go")
    assert "pw" not in str(failure.value) and secret not in str(failure.value)


# -- durable runs ----------------------------------------------------------------------------


def test_an_agent_job_calls_server_tools_as_durable_steps(
    app: App, calc: Callable[..., MCPServer]
) -> None:
    model = ScriptedModel(
        "mcp-job", script=[call("add", a=2, b=3), call("fail") + call("whoami"), say("5")]
    )
    app.agent(Agent("summer", model, "Add.", tools=[calc()]))

    handle = app.run_now("summer", "2 + 3")
    app.drain()

    assert handle.result() == "5"
    assert "add" in {t.name for t in model.requests[0].tools}
    assert results(model.requests[1])[0].content == "5"
    steps = {s.key: s for s in app.store.steps(handle.id)}
    assert list(steps) == ["model#1", "tool:add", "model#2", "tool:fail", "tool:whoami", "model#3"]
    assert steps["tool:add"].result["content"] == "5"
    assert steps["tool:fail"].result["is_error"] is True
    assert json.loads(results(model.requests[2])[1].content) == {
        "rota/idempotency_key": f"{handle.id}:tool:whoami",
        "rota/run_id": handle.id,
    }


def test_a_resumed_run_lists_the_tools_again_but_does_not_repeat_completed_calls(
    app: App, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    crash = {"pending": True}
    turns: list[int] = []

    def reply(request: ModelRequest, turn: int) -> Any:
        turns.append(turn)
        if turn == 2 and crash["pending"]:  # the worker dies while the model thinks
            crash["pending"] = False
            raise RunInterrupted("lease_lost")
        return [call("record", path=str(log), text="charged acme"), say("done")][turn - 1]

    model = ScriptedModel("mcp-resume", fn=reply)
    app.agent(Agent("biller", model, "Bill.", tools=[calc_stdio()]))

    handle = app.run_now("biller", "bill acme")
    # A lease long enough that a loaded machine's late heartbeat cannot add a second reclaim
    # (and so a third call of model#2) to the one the test stages.
    app.drain(lease_s=1.5, poll_interval_s=0.02)

    assert handle.result() == "done"
    assert turns == [1, 2, 2]  # model#1 came from its checkpoint on resume
    assert log.read_text() == "charged acme\n"  # the completed tool call was not repeated
    assert all(r.tools for r in model.requests)
    run = handle.get()
    assert (run.attempt, run.state) == (2, RunState.SUCCEEDED)
    assert [s.key for s in app.store.steps(handle.id)] == ["model#1", "tool:record", "model#2"]


def test_ctx_agent_in_a_workflow_records_server_calls_under_the_agents_prefix(app: App) -> None:
    model = ScriptedModel("mcp-flow", script=[call("add", a=20, b=22), say("42")])
    adder = Agent("adder", model, "Add.", tools=[calc_stdio(include=["add"])])

    @app.workflow
    async def total(ctx, payload):
        result = await ctx.agent(adder, payload)
        return result.output_or_raise()

    handle = app.run_now("total", "20 + 22")
    app.drain()

    assert handle.result() == "42"
    assert [s.key for s in app.store.steps(handle.id)] == [
        "agent:adder/model#1",
        "agent:adder/tool:add",
        "agent:adder/model#2",
    ]


def test_a_job_whose_server_cannot_start_fails_with_the_reason(app: App) -> None:
    model = ScriptedModel("mcp-job-never", script=[say("x")])
    source = mcp_stdio(sys.executable, ["-c", "raise SystemExit('missing CRM_TOKEN')"])
    app.agent(Agent("stranded", model, "Go.", tools=[source]))

    handle = app.run_now("stranded")
    app.drain()

    run = handle.get()
    assert run.state == RunState.FAILED
    assert run.error["type"] == "MCPServerError"
    assert "missing CRM_TOKEN" in run.error["message"]
    assert model.calls == 0


# -- definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: mcp_stdio("python", "-m server"), "args must be a list of strings"),
        (lambda: mcp_stdio(""), "mcp_stdio needs a command"),
        (lambda: mcp_stdio("srv", env={"N": 1}), "env must map strings to strings"),
        (
            lambda: mcp_stdio("srv", scopes="crm:read"),
            r"scopes must be a list, e.g. \['crm:read'\]",
        ),
        (lambda: mcp_stdio("srv", include="add"), r"include must be a list of tool names"),
        (lambda: mcp_stdio("srv", name="my server"), "name='my server' is not allowed"),
        (lambda: mcp_stdio("srv", timeout=0), "timeout must be more than 0"),
        (lambda: mcp_http("localhost:8000/mcp"), "needs an http:// or https:// URL"),
    ],
)
def test_definition_mistakes_are_config_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_mcp_tools_are_tools() -> None:
    assert issubclass(MCPTool, Tool)
    source = calc_stdio()
    agent = Agent("defined", ScriptedModel("mcp-def", script=[]), "Go.", tools=[source])
    assert agent.tool_sources == (source,)
    assert repr(source).startswith("<MCPServer ?: ")


def test_results_render_text_other_content_and_structured_content() -> None:
    from mcp.types import CallToolResult, ImageContent, TextContent

    def rendered(content: list[Any], structured: Any = None) -> str:
        return render_result(CallToolResult(content=content, structured_content=structured))

    text = TextContent(type="text", text="hello")
    image = ImageContent(type="image", data="aGVsbG8h", mime_type="image/png")
    assert rendered([text, image]) == "hello\n[image image/png, 6 bytes]"
    assert rendered([], {"total": 3}) == '{"total":3}'
    assert rendered([TextContent(type="text", text="3")], {"result": 3}) == "3"
    assert rendered([TextContent(type="text", text='{"a": 1}')], {"a": 1}) == '{"a": 1}'
    assert rendered([text], {"a": 1}) == 'hello\n{"a":1}'
