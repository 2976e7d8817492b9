"""A real `rota serve` for tests: uvicorn on a free loopback port, in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rota import App
from rota.api import ApiServer


@contextmanager
def serving(app: App) -> Iterator[str]:
    """The base URL of `app`'s API, served until the block ends."""
    server = ApiServer(app, port=0, graceful_s=1)
    server.bind()  # listening from here on: requests wait in the backlog until uvicorn is up
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    thread = threading.Thread(target=serve, name="rota-test-api", daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.stop()  # open streams are cut after graceful_s
        thread.join(30)
        assert not thread.is_alive(), "the API server did not stop"
        assert not failed, failed
