"""Running the API with uvicorn inside an event loop the caller owns.

`rota serve` runs it alone; `rota dev` runs it next to a worker in the same loop. Signals are
the caller's business (the worker's handlers must see them, and uvicorn would re-raise them
after stopping), so uvicorn's own signal capture is turned off: the caller calls `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from starlette.applications import Starlette

from ..app import App
from ..errors import RotaError
from .factory import create_api

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8800


class ListenError(RotaError):
    """The API cannot listen where it was asked to, or did not start."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """One uvicorn server for one App's API. `port=0` picks a free port (see `.port`)."""

    def __init__(
        self,
        app: App,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        api: Starlette | None = None,
        graceful_s: int = 10,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.graceful_s = graceful_s
        self.api = api if api is not None else create_api(app)
        config = uvicorn.Config(
            self.api,
            host=host,
            port=port,
            lifespan="on",
            log_config=None,  # rota's CLI owns logging; uvicorn's loggers propagate to it
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=graceful_s,
        )
        self._server = _Server(config)
        self._socket: socket.socket | None = None

    def bind(self) -> None:
        """Take the address now, so a busy port fails before anything else starts.

        The socket listens at once: connections made before uvicorn is up wait in the
        backlog instead of being refused, so the address may be announced from here on."""
        if self._socket is not None:
            return
        try:
            infos = socket.getaddrinfo(
                self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ListenError(
                f"cannot listen on host {self.host!r}: {exc.strerror}; pass --host with an "
                "address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
            ) from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self._server.config.backlog)
        except OSError as exc:
            sock.close()
            raise ListenError(
                f"cannot listen on {_hostport(self.host, self.requested_port)}: "
                f"{exc.strerror or exc}; pass --port to use another port"
            ) from None
        self._socket = sock

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._socket is None:
            return self.requested_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{_hostport(self.host, self.port)}"

    @property
    def started(self) -> bool:
        return self._server.started

    async def serve(self) -> None:
        """Serve until stop(); returns once open requests are answered (or graceful_s)."""
        self.bind()
        assert self._socket is not None
        try:
            await self._server.serve(sockets=[self._socket])
        except SystemExit:  # uvicorn's way of saying startup failed; it logged why
            raise ListenError(f"the HTTP API on {self.url} failed to start") from None
        finally:
            self._socket.close()

    def stop(self, *, now: bool = False) -> None:
        """Stop accepting; `now` also stops waiting for requests in progress. Thread-safe."""
        self._server.should_exit = True
        if now:
            self._server.force_exit = True

    @contextlib.asynccontextmanager
    async def running(self, on_exit: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Serve in the background of the caller's loop while the block runs; stop and wait
        on leaving. `on_exit` is called when the server stops for any reason, so a worker
        sharing the process can stop too instead of running on without its API."""
        task = asyncio.create_task(self.serve(), name="rota-api")
        if on_exit is not None:
            task.add_done_callback(lambda _: on_exit())
        try:
            yield
        finally:
            self.stop()
            await task  # raises what stopped the server, if it failed


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
