"""Retries around any Model: the one place rota decides when a failed provider call is tried
again. The SDK clients are built with `max_retries=0`, so a call is never retried twice over
(by the SDK and by us) and every attempt is visible here.

Also home to what every provider adapter shares: which HTTP statuses are worth retrying, how
to read the provider's `retry-after` hint, and keeping one SDK client per event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import math
import random
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from rota.agents.types import Model, ModelRequest, ModelResponse
from rota.errors import ProviderError

T = TypeVar("T")

# 408 request timeout, 409 conflict (a lock held upstream), 429 rate limited; every 5xx,
# which includes Anthropic's 529 "overloaded".
_RETRYABLE_4XX = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    return status in _RETRYABLE_4XX or status >= 500


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the provider asked us to wait: `retry-after-ms` (milliseconds, sent by both
    Anthropic and OpenAI), else `retry-after` as seconds or as an HTTP date. None when
    absent or unreadable; never negative."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _number(value)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None instead of raising
        return None
    return max(0.0, when.timestamp() - now())


def _number(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class PerLoop(Generic[T]):
    """One SDK client per running event loop, closed when that loop shuts down.

    An httpx connection pool belongs to the loop it was used on, while a model is defined at
    import time and may be called from several loops (a worker's, a test's asyncio.run).
    Closing: each client is paired with a suspended async generator whose `finally` closes
    it; `asyncio.run` (like any loop shut down properly) finalises pending async generators
    before the loop closes, so pooled connections are closed on their own loop instead of
    leaking sockets into garbage collection.
    """

    def __init__(self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> None:
        self._factory = factory
        self._close = close
        self._entries: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[T, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None:
            client = self._factory()
            closer = self._closer(client)
            await closer.__anext__()  # now registered with the loop, suspended at `yield`
            entry = (client, closer)
            self._entries[loop] = entry
        return entry[0]

    async def aclose(self) -> None:
        """Close the running loop's client now."""
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()

    async def _closer(self, client: T) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close(client)


class RetryingModel:
    """Wraps a Model; retries the ProviderErrors it marks `retryable`.

    The delay before attempt n+1 is exponential (`base_delay * 2**(n-1)`, capped at
    `max_delay`) with jitter (a random factor in [0.5, 1]), so many runs that failed
    together do not retry together. When the provider sent `retry_after`, we wait at least
    that long. A `retry_after` longer than `max_retry_after` is not slept on: the error is
    raised at once (it carries `retry_after`), so a durable caller can park the run instead
    of holding a worker.

    Usage is whatever the successful response reports: a failed attempt returns no usage,
    so nothing is counted twice. The response's `extra` gains `attempts` (calls made),
    `retry_after_seen` (the hints received, in order) and `retry_delays` (what we slept).
    """

    def __init__(
        self,
        model: Model,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_retry_after: float = 120.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model = model
        self.provider = model.provider
        self.name = model.name
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"RetryingModel({self.model!r}, max_attempts={self.max_attempts})"

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt number `attempt` (1-based), without a hint."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        seen: list[float] = []
        delays: list[float] = []
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.model.complete(request)
            except ProviderError as exc:
                if exc.retry_after is not None:
                    seen.append(exc.retry_after)
                if not exc.retryable or attempt >= self.max_attempts:
                    if exc.retryable:
                        exc.add_note(f"rota gave up after {attempt} attempts")
                    raise
                if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                    exc.add_note(
                        f"rota did not wait: retry_after {exc.retry_after:g}s exceeds "
                        f"max_retry_after {self.max_retry_after:g}s"
                    )
                    raise
                delay = self.backoff(attempt)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                delays.append(delay)
                await self._sleep(delay)
                continue
            extra = {
                **response.extra,
                "attempts": attempt,
                "retry_after_seen": seen,
                "retry_delays": delays,
            }
            return dataclasses.replace(response, extra=extra)
