"""A small MCP server for rota's tests, written with the SDK's MCPServer (FastMCP in mcp 1.x).

`python calc.py` serves stdio. `python calc.py http` serves streamable HTTP on 127.0.0.1, on
a port the system picks, and prints `PORT <n>` on stdout once it listens.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def fail(reason: str = "as asked") -> str:
    """Always fails."""
    raise ToolError(f"fail was called: {reason}")


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """End the server's process without answering."""
    print("calc: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def record(path: str, text: str) -> str:
    """Append a line to a file (to count how often a call really ran)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")
    return f"recorded {text}"


@server.tool()
def whoami(ctx: Context) -> dict[str, str]:
    """What rota sent in the request's _meta."""
    meta = ctx.request_context.meta or {}
    return {k: str(v) for k, v in meta.items() if k.startswith("rota/")}


def serve_http() -> None:
    import anyio
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    web = uvicorn.Server(config)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(web.serve, [sock])
            while not web.started:
                await anyio.sleep(0.01)
            print(f"PORT {port}", flush=True)

    anyio.run(main)


if __name__ == "__main__":
    if sys.argv[1:] == ["http"]:
        serve_http()
    else:
        server.run()
