"""MCP servers as tool sources: `Agent(tools=[lookup, mcp_stdio("python", ["-m", "crm"])])`.

An `MCPServer` is a definition, not a connection. Each agent run opens its own session (a
stdio subprocess, or a streamable HTTP connection) through the official `mcp` SDK when it
starts, lists the server's tools for the model with the server's own input schemas, calls
them with `ClientSession.call_tool`, and closes the session when the run ends, however it
ends. Nothing is kept across runs, tasks or event loops: the SDK's anyio cancel scopes must
be entered and left by one task, so each session lives in one task of its own (its owner),
started by the run and awaited by it when the run ends. The run's tool calls talk to the
session through the SDK's streams, and a cancelled run still lets the owner shut the
server down (the SDK's stdio shutdown is bounded: close stdin, wait, then kill the tree).

Everything that can wait is bounded: starting and listing (`connect_timeout`), each call
(`timeout`), and closing. A server that cannot start fails the run with `MCPServerError`
(a job's `retries` apply); a call that fails, times out or meets a crashed server comes back
to the model as an error result.

The SDK is imported only when a session opens, so defining agents stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shlex
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlsplit

from ..durations import Duration, seconds
from ..errors import ConfigError, RotaError
from ..redaction import redactor
from ..version import __version__
from .tools import Tool, ToolContext, ToolSource, _clean_schema, render
from .types import ToolCall, ToolResult, ToolSpec

if TYPE_CHECKING:
    import mcp.types
    from mcp import ClientSession
    from mcp.client._transport import Transport

log = logging.getLogger(__name__)

Include = Collection[str] | Callable[[str], bool]

_CLOSE_TIMEOUT = 15.0  # the SDK's own stdio shutdown takes at most about 6.5s
_LIST_PAGES = 100  # a server whose tool list never ends cannot hang a run
_STDERR_TAIL = 2000
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class MCPServerError(RotaError):
    """An MCP server could not be started, reached or listed. It fails the run (a job's
    `retries` apply); the message names the server and, for stdio, ends with what the
    server wrote to stderr."""


class MCPServer(ToolSource):
    """An MCP server an agent may use; see `mcp_stdio` and `mcp_http`."""

    reached = "started"

    def __init__(
        self,
        label: str,
        *,
        name: str | None,
        scopes: Sequence[str],
        include: Include | None,
        timeout: Duration,
        connect_timeout: Duration,
        requires_approval: bool,
    ) -> None:
        self.label = label  # for messages: the command line or the URL (no secrets)
        if name is not None and (not isinstance(name, str) or not _VALID.fullmatch(name)):
            raise ConfigError(
                f"MCP server {label}: name={name!r} is not allowed; use 1-64 letters, digits, "
                "'_' or '-'"
            )
        self.name = name
        if isinstance(scopes, str):
            raise ConfigError(f"MCP server {label}: scopes must be a list, e.g. [{scopes!r}]")
        self.scopes: tuple[str, ...] = tuple(scopes)
        if isinstance(include, str) or not (
            include is None or callable(include) or isinstance(include, Collection)
        ):
            raise ConfigError(
                f"MCP server {label}: include must be a list of tool names or a function of "
                f"the name, e.g. include=[{include!r}]"
            )
        self.include = include
        self.timeout_s = _positive(timeout, f"MCP server {label}: timeout")
        self.connect_timeout_s = _positive(connect_timeout, f"MCP server {label}: connect_timeout")
        self.requires_approval = bool(requires_approval)

    def __repr__(self) -> str:
        return f"<MCPServer {self.name or '?'}: {self.label}>"

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[tuple[str, Sequence[Tool]]]:
        """A session for one run: (the server's name, its tools bound to the session)."""
        session = _Session(self)
        await session.start()
        try:
            yield session.name, session.tools
        finally:
            await session.close()

    # -- per transport ---------------------------------------------------------------------

    def _stderr(self) -> IO[bytes] | None:
        return None

    async def _transport(self, stack: contextlib.AsyncExitStack, stderr: Any) -> Transport:
        raise NotImplementedError

    def _fallback_name(self) -> str:
        raise NotImplementedError


class _StdioServer(MCPServer):
    def __init__(
        self,
        command: str,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | Path | None,
        **options: Any,
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError("mcp_stdio needs a command, e.g. mcp_stdio('python', ['-m', 'srv'])")
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"mcp_stdio({command!r}): args must be a list of strings")
        if env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dict(env).items()
        ):
            raise ConfigError(f"mcp_stdio({command!r}): env must map strings to strings")
        self.command = command
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        super().__init__(shlex.join([command, *self.args]), **options)

    def _stderr(self) -> IO[bytes] | None:
        return tempfile.TemporaryFile("w+b")

    async def _transport(self, stack: contextlib.AsyncExitStack, stderr: Any) -> Transport:
        from mcp import StdioServerParameters  # noqa: PLC0415  # heavy: the mcp SDK loads on first use
        from mcp.client.stdio import stdio_client  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

        params = StdioServerParameters(
            command=self.command, args=self.args, env=self.env, cwd=self.cwd
        )
        return stdio_client(params, errlog=cast(TextIO, stderr))

    def _fallback_name(self) -> str:
        if "-m" in self.args[:-1]:
            return self.args[self.args.index("-m") + 1].rpartition(".")[2]
        scripts = [a for a in self.args if a.endswith((".py", ".js", ".mjs", ".ts"))]
        return Path(scripts[0] if scripts else self.command).stem


class _HttpServer(MCPServer):
    reached = "reached"

    def __init__(self, url: str, headers: Mapping[str, str] | None, **options: Any) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"mcp_http needs an http:// or https:// URL, got {url!r}")
        if headers is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dict(headers).items()
        ):
            raise ConfigError(f"mcp_http({url!r}): headers must map strings to strings")
        self.url = url
        self.headers = dict(headers or {})
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        super().__init__(f"{parts.scheme}://{host}{parts.path}", **options)  # no credentials

    async def _transport(self, stack: contextlib.AsyncExitStack, stderr: Any) -> Transport:
        import httpx2  # noqa: PLC0415  # heavy: the mcp SDK loads on first use
        from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

        # The SDK's defaults, but connecting within connect_timeout; the read timeout covers
        # the server's long-lived event stream, each call is bounded by the session.
        timeout = httpx2.Timeout(self.connect_timeout_s, read=max(300.0, self.timeout_s + 5))
        client = await stack.enter_async_context(
            httpx2.AsyncClient(headers=self.headers, timeout=timeout)
        )
        return streamable_http_client(self.url, http_client=client)

    def _fallback_name(self) -> str:
        parts = urlsplit(self.url)
        return parts.hostname or "mcp"


def mcp_stdio(
    command: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (),
    include: Include | None = None,
    cwd: str | Path | None = None,
    timeout: Duration = "60s",
    connect_timeout: Duration = "30s",
    requires_approval: bool = False,
) -> MCPServer:
    """An MCP server run as a subprocess speaking stdio, one per agent run.

    The server does not inherit rota's environment: it gets the SDK's safe defaults (HOME,
    PATH, USER, ...) plus `env`. `name` (default: the name the server reports) prefixes its
    tools' names where they clash (`NAME__tool`); `include` keeps only the tools named (or
    those a function of the name accepts); `scopes` and `requires_approval` are recorded on
    every tool, for the tool guards. `timeout` bounds each call, `connect_timeout` starting
    the server and listing its tools.
    """
    return _StdioServer(
        command,
        args,
        env,
        cwd,
        name=name,
        scopes=scopes,
        include=include,
        timeout=timeout,
        connect_timeout=connect_timeout,
        requires_approval=requires_approval,
    )


def mcp_http(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (),
    include: Include | None = None,
    timeout: Duration = "60s",
    connect_timeout: Duration = "30s",
    requires_approval: bool = False,
) -> MCPServer:
    """An MCP server reached over streamable HTTP, one session per agent run. `headers`
    (e.g. an Authorization header) go with every request and appear in no message. The
    other options are those of `mcp_stdio`."""
    return _HttpServer(
        url,
        headers,
        name=name,
        scopes=scopes,
        include=include,
        timeout=timeout,
        connect_timeout=connect_timeout,
        requires_approval=requires_approval,
    )


# -- one session ---------------------------------------------------------------------------


class _Session:
    """One server connection for one run. Its owner task enters and leaves every SDK
    context (transport, client session); the run calls tools through it from its own task.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.name = server.name or ""
        self.tools: list[Tool] = []
        self.session: ClientSession | None = None
        self._stderr = server._stderr()
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None  # why it could not start
        self._lost: BaseException | None = None  # why it ended before close()
        self._owner: asyncio.Task[None] | None = None
        self._tail = ""  # the end of stderr, kept when the file is closed

    async def start(self) -> None:
        self._owner = asyncio.create_task(self._own(), name=f"rota mcp {self.server.label}")
        try:
            async with asyncio.timeout(self.server.connect_timeout_s):
                await self._ready.wait()
        except TimeoutError:
            await self._finish(cancel=True)
            raise MCPServerError(
                f"MCP server {self.server.label} did not start and list its tools within "
                f"{self.server.connect_timeout_s:g}s (connect_timeout)" + self._stderr_tail()
            ) from None
        except BaseException:  # the run was cancelled while the server started
            await self._finish(cancel=True)
            raise
        if self._error is not None:
            await self._finish(cancel=False)
            error, self._error = self._error, None
            if isinstance(error, MCPServerError):
                raise error
            raise MCPServerError(
                f"MCP server {self.server.label} could not be {self.server.reached}: "
                f"{_describe(error)}" + self._stderr_tail()
            ) from error

    async def close(self) -> None:
        await self._finish(cancel=False)
        if self._lost is not None:
            log.warning(
                "MCP server %s stopped during the run: %s%s",
                self.server.label,
                _describe(self._lost),
                self._stderr_tail(),
            )
        elif self._stderr is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("MCP server %s stderr:%s", self.server.label, self._stderr_tail())

    async def call(self, tool: str, arguments: dict[str, Any], meta: dict[str, Any]) -> Any:
        if self.session is None or self._owner is None or self._owner.done():
            raise _Stopped()
        try:
            # A backstop: the SDK's own read timeout ends the call first.
            async with asyncio.timeout(self.server.timeout_s + 5):
                return await self.session.call_tool(
                    tool,
                    arguments,
                    read_timeout_seconds=self.server.timeout_s,
                    meta=cast("mcp.types.RequestParamsMeta", meta),
                )
        except Exception as exc:
            if _closed(exc) and self._lost is None:
                self._lost = exc  # the server crashed or hung up: say so when closing
            raise

    async def _own(self) -> None:
        from mcp import Client  # noqa: PLC0415  # heavy: the mcp SDK loads on first use
        from mcp.types import Implementation  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self.server._transport(stack, self._stderr)
                client = Client(
                    transport,
                    cache=None,
                    client_info=Implementation(name="rota", version=__version__),
                )
                await stack.enter_async_context(client)
                listed = await _list_tools(client.session)
                self.name = self.server.name or _server_name(client.session, self.server)
                self.tools = self._bind(listed)
                self.session = client.session
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            elif not self._stop.is_set():
                self._lost = exc
            if not isinstance(exc, Exception):
                raise  # cancellation ends the task as cancelled
        finally:
            self.session = None

    async def _finish(self, *, cancel: bool) -> None:
        """Stop the owner and wait for it (bounded), even if this task is being cancelled."""
        owner = self._owner
        if owner is not None and not owner.done():
            if cancel:
                owner.cancel()
            self._stop.set()
            done, _ = await asyncio.wait({owner}, timeout=_CLOSE_TIMEOUT)
            if not done:
                log.warning("MCP server %s did not close in time", self.server.label)
        if owner is not None and owner.done() and not owner.cancelled():
            owner.exception()  # retrieved: it was stored in _error or _lost
        if self._stderr is not None and (owner is None or owner.done()):
            self._tail = self._stderr_tail()
            self._stderr.close()
            self._stderr = None

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return self._tail
        try:
            self._stderr.flush()
            size = self._stderr.seek(0, 2)
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            text = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends with:\n{text}" if text else ""

    def _bind(self, listed: list[mcp.types.Tool]) -> list[Tool]:
        include = self.server.include
        if include is not None and not callable(include):
            missing = sorted(set(include) - {t.name for t in listed})
            if missing:
                raise MCPServerError(
                    f"MCP server {self.server.label} has no tool named "
                    f"{', '.join(map(repr, missing))} (include=...); its tools are: "
                    + (", ".join(sorted(t.name for t in listed)) or "none")
                )
        chosen = [
            t
            for t in listed
            if include is None or (include(t.name) if callable(include) else t.name in include)
        ]
        tools: dict[str, MCPTool] = {}
        for remote in chosen:
            local = _tool_name(remote.name)
            if local in tools:
                raise MCPServerError(
                    f"MCP server {self.server.label}: the tools {remote.name!r} and "
                    f"{tools[local].remote_name!r} would both be called {local!r}; "
                    "leave one out with include=[...]"
                )
            tools[local] = MCPTool(local, remote, self)
        return list(tools.values())


class _Stopped(Exception):
    """The session's owner has ended: the server exited or the connection dropped."""


# -- tools ---------------------------------------------------------------------------------


class MCPTool(Tool):
    """A tool of an MCP server, bound to one run's session. Its schema is the server's (with
    titles dropped); the server validates the arguments. Guards run as for any tool."""

    def __init__(self, name: str, remote: mcp.types.Tool, session: _Session) -> None:
        server = session.server
        self.name = name
        self.remote_name = remote.name
        self.server_label = server.label
        self.scopes = server.scopes
        self.requires_approval = server.requires_approval
        # The server's own hint; shadow runs call only tools that change nothing.
        self.read_only = bool(getattr(remote.annotations, "readOnlyHint", False))
        self.description = remote.description or remote.title or ""
        self.takes_context = False
        schema = _clean_schema(dict(remote.input_schema or {}))
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.spec = ToolSpec(name, self.description, schema)
        self._session = session

    def __repr__(self) -> str:
        return f"<MCPTool {self.name} of {self._session.name or self.server_label}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self!r} is called by an agent run, which holds its session")

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return dict(arguments)  # the server validates against its own schema

    async def invoke(
        self, call: ToolCall, context: ToolContext[Any], values: dict[str, Any]
    ) -> ToolResult:
        meta: dict[str, Any] = {"rota/idempotency_key": context.idempotency_key}
        if context.run_id is not None:
            meta["rota/run_id"] = context.run_id
        try:
            result = await self._session.call(self.remote_name, values, meta)
        except Exception as exc:
            return ToolResult(call.id, redactor.redact(self._explain(exc)), is_error=True)
        text = redactor.redact(render_result(result))
        return ToolResult(call.id, text, is_error=bool(result.is_error))

    def _explain(self, exc: Exception) -> str:
        from mcp import MCPError  # noqa: PLC0415  # heavy: the mcp SDK loads on first use
        from mcp.types import REQUEST_TIMEOUT  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

        where = f"tool {self.name!r} (MCP server {self._session.name})"
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT
        ):
            return f"{where} timed out after {self._session.server.timeout_s:g}s"
        if isinstance(exc, _Stopped) or _closed(exc):
            return f"{where} failed: the server stopped (its connection closed)"
        if isinstance(exc, MCPError):
            return f"{where} failed: the server answered with an error: {exc}"
        return f"{where} failed: {_describe(exc)}"


def render_result(result: mcp.types.CallToolResult) -> str:
    """A tool result as the text the model reads: its text blocks, joined; other blocks as a
    short note; structured content as JSON unless the text already says the same (servers
    usually send both, and the SDK's servers wrap a plain value as {"result": value})."""
    parts: list[str] = []
    for block in result.content:
        kind = getattr(block, "type", "?")
        if kind == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            mime = getattr(block, "mime_type", "")
            parts.append(f"[{kind} {mime}, {len(getattr(block, 'data', '')) * 3 // 4} bytes]")
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {getattr(resource, 'uri', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind} content]")
    text = "\n".join(parts)
    structured = result.structured_content
    if structured is None or _says(text, structured):
        return text
    data = render(structured)
    return f"{text}\n{data}" if text else data


def _says(text: str, structured: Any) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    wrapped = isinstance(structured, dict) and structured.keys() == {"result"}
    return bool(value == structured or (wrapped and value == structured["result"]))


# -- helpers -------------------------------------------------------------------------------


async def _list_tools(session: ClientSession) -> list[mcp.types.Tool]:
    from mcp.types import PaginatedRequestParams  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

    capabilities = session.server_capabilities
    if capabilities is not None and capabilities.tools is None:
        return []
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _server_name(session: ClientSession, server: MCPServer) -> str:
    info = session.server_info
    reported = _tool_name(info.name) if info is not None and info.name else ""
    return reported or _tool_name(server._fallback_name()) or "mcp"


def _tool_name(name: str) -> str:
    """A name both Anthropic and OpenAI accept: 1-64 of letters, digits, '_' and '-'."""
    return _INVALID.sub("_", name.strip())[:64]


def _positive(value: Duration, what: str) -> float:
    result = seconds(value, what=what)
    if result <= 0:
        raise ConfigError(f"{what} must be more than 0, got {value!r}")
    return result


def _closed(exc: BaseException) -> bool:
    from mcp import MCPError  # noqa: PLC0415  # heavy: the mcp SDK loads on first use
    from mcp.types import CONNECTION_CLOSED  # noqa: PLC0415  # heavy: the mcp SDK loads on first use

    return isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # the SDK's task groups wrap the real error
    if _closed(exc):
        return "it closed the connection before answering"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
