"""A loopback TCP proxy between rota's processes and PostgreSQL that injects network faults.

Each process the chaos suite starts connects through a listener of its own (`listen(name)`
returns the port), so a fault can hit one worker's connections and not the others'. The
proxy runs an asyncio loop on a thread of its own; its fault methods are called from the test
thread:

- `drop(names)`: every open connection of those listeners is aborted at once, as a broken
  network path or a restarted load balancer would. The client sees "server closed the
  connection unexpectedly" (or a reset) on its next read.
- `stall(seconds, names)`: nothing is forwarded in either direction, and new connections are
  held, until the time has passed; then everything buffered goes through. Longer than the
  lease, this makes the stalled worker a zombie that comes back holding runs it lost.
- `delay(seconds, duration, names)`: each chunk waits `seconds` before it is forwarded, for
  `duration` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass
class _Listener:
    """One listening port: its live connections and the faults in force on it."""

    name: str
    port: int = 0
    stalled_until: float = 0.0
    delay_s: float = 0.0
    delayed_until: float = 0.0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class FaultyProxy:
    """Forwards each listener's connections to `upstream_port` on 127.0.0.1, with faults."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listeners: dict[str, _Listener] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self._thread.start()

    # -- set-up, from the test thread --------------------------------------------------------

    def listen(self, name: str) -> int:
        """A new listener called `name`; returns its port."""
        return self._call(self._listen(name))

    def close(self) -> None:
        """Stop listening, abort every connection and stop the loop."""
        with contextlib.suppress(RuntimeError):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- faults, from the test thread --------------------------------------------------------

    def drop(self, names: Iterable[str] | None = None) -> int:
        """Abort every open connection of these listeners (all when None); returns how many."""
        return self._call(self._drop(self._chosen(names)))

    def stall(self, seconds: float, names: Iterable[str] | None = None) -> None:
        """Forward nothing on these listeners for `seconds` (new connections wait too)."""
        until = time.monotonic() + seconds
        for listener in self._chosen(names):
            listener.stalled_until = max(listener.stalled_until, until)

    def delay(self, seconds: float, duration: float, names: Iterable[str] | None = None) -> None:
        """Hold each forwarded chunk `seconds` on these listeners, for `duration` seconds."""
        until = time.monotonic() + duration
        for listener in self._chosen(names):
            listener.delay_s = seconds
            listener.delayed_until = until

    def connections(self) -> int:
        """Open connections through the proxy (both directions counted once)."""
        return sum(len(listener.writers) for listener in self._listeners.values()) // 2

    # -- the loop's side ---------------------------------------------------------------------

    def _chosen(self, names: Iterable[str] | None) -> list[_Listener]:
        if names is None:
            return list(self._listeners.values())
        return [self._listeners[name] for name in names]

    def _call(self, coroutine: object) -> int:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        return int(future.result(timeout=30))

    async def _listen(self, name: str) -> int:
        listener = _Listener(name)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connect(listener, reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        listener.port = int(server.sockets[0].getsockname()[1])
        self._listeners[name] = listener
        self._servers.append(server)
        return listener.port

    async def _close(self) -> int:
        for server in self._servers:
            server.close()
        dropped = await self._drop(list(self._listeners.values()))
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return dropped

    async def _drop(self, listeners: list[_Listener]) -> int:
        dropped = 0
        for listener in listeners:
            for writer in list(listener.writers):
                writer.transport.abort()
                dropped += 1
            listener.writers.clear()
        return dropped // 2

    async def _connect(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._gate(listener)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the server is down: the client sees the refusal as a closed socket
            writer.transport.abort()
            return
        listener.writers.update((writer, up_writer))
        await asyncio.gather(
            self._pump(listener, reader, up_writer),
            self._pump(listener, up_reader, writer),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            listener.writers.discard(w)
            w.transport.abort()

    async def _pump(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction chunk by chunk, in order, through the listener's faults."""
        try:
            while data := await reader.read(CHUNK):
                await self._gate(listener)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            writer.transport.abort()

    async def _gate(self, listener: _Listener) -> None:
        """Wait out a stall, then the per-chunk delay if one is in force."""
        while (left := listener.stalled_until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
        if listener.delayed_until > time.monotonic():
            await asyncio.sleep(listener.delay_s)
