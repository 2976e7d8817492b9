"""RateLimitedModel: a shared requests-per-minute and tokens-per-minute limit in front of any
model, enforced across every worker through the store (see storage/limits.py).

A call first charges one request and an estimate of its tokens (the prompt's estimate plus
max_tokens); when the response arrives the token charge is corrected to what the provider
reported, so the limit tracks real usage. Limits are smooth: at most `burst_s` seconds' worth
of requests go out back to back, which also keeps clear of providers that enforce their
per-minute limits over shorter intervals.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...batches import WriteBatch
from ...clock import Clock, system_clock
from ...errors import ConfigError
from ...storage.limits import Charge, reserve
from ..types import Model, ModelRequest, ModelResponse, Usage, estimate_tokens, to_json


@dataclass(frozen=True)
class RateLimit:
    """A provider's per-minute limits, shared by every worker through the store, so that many
    workers together stay under them instead of each meeting 429s."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    # Under a second: a provider's own one-second bucket then never sees our jitter as a
    # burst over its limit (measured: burst 1.0 drew 429s, 0.5 none).
    burst_s: float = 0.5

    def __post_init__(self) -> None:
        for value in (self.requests_per_minute, self.tokens_per_minute):
            if value is not None and value <= 0:
                raise ConfigError("rate limits must be positive, e.g. RateLimit(3000, 400_000)")


class RateLimitedModel:
    """`store` (with `call`, how to call it: `asyncio.to_thread` unless given) holds the
    limit shared by every worker; without one, the limit is kept in this process. A durable
    run's chain gets a copy bound to the run's store (`bound`, see agentloop/chain.py)."""

    def __init__(
        self,
        model: Model,
        limit: RateLimit,
        store: Any = None,
        *,
        call: Callable[..., Awaitable[Any]] | None = None,
        key: str | None = None,
        clock: Clock = system_clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self.provider, self.name = model.provider, model.name
        self.limit = limit
        self.store = store
        self.call = call
        self.key = key or f"{model.provider}:{model.name}"
        self.clock = clock
        self.sleep = sleep
        self.waited_s = 0.0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        store, call = self._store()
        estimate = request_tokens(request) if self.limit.tokens_per_minute else 0
        charges = self._charges(estimate)
        take = (charges, self.clock.now())
        if self.store is None:  # kept in this process
            wait = await call(store.take, *take)
        else:  # reserves the turn, with the other runs' calls waiting for theirs
            wait = await _takes(store).write(call, take)
        if wait > 0:
            self.waited_s += wait
            await self.sleep(wait)
        response = await self.model.complete(request)
        if self.limit.tokens_per_minute:
            correction = (billed_tokens(response.usage) - estimate) * self._token_interval()
            await call(store.adjust, f"{self.key}:tokens", correction, self.clock.now())
        return response

    def bound(self, store: Any, call: Callable[..., Awaitable[Any]]) -> RateLimitedModel:
        """This limit on `store` (a run's: shared by every worker, called on the worker's few
        database threads through `call`), unless it was given a store of its own."""
        if self.store is not None:
            return self
        bound = copy.copy(self)
        bound.store, bound.call = store, call
        return bound

    def _store(self) -> tuple[Any, Callable[..., Awaitable[Any]]]:
        """The given store, else a limit kept in this process (an agent run directly,
        outside any worker)."""
        if self.store is not None:
            return self.store, self.call or asyncio.to_thread
        return _LOCAL, _direct

    def _charges(self, estimate: int) -> dict[str, Charge]:
        charges = {}
        if self.limit.requests_per_minute:
            interval = 60.0 / self.limit.requests_per_minute
            charges[f"{self.key}:requests"] = Charge(interval, 1, self.limit.burst_s)
        if self.limit.tokens_per_minute:
            charges[f"{self.key}:tokens"] = Charge(
                self._token_interval(), estimate, self.limit.burst_s
            )
        return charges

    def _token_interval(self) -> float:
        return 60.0 / (self.limit.tokens_per_minute or 1.0)


class LocalLimits:
    """The store's GCRA arithmetic kept in memory, for agents run outside a worker."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, charges: Mapping[str, Charge], now: float) -> float:
        with self._lock:
            start, new = reserve(self._tats, charges, now)
            self._tats.update(new)
            return start - now

    def adjust(self, key: str, seconds: float, now: float) -> None:
        with self._lock:
            self._tats[key] = max(now, self._tats.get(key, now) + seconds)


_LOCAL = LocalLimits()

Take = tuple[Mapping[str, Charge], float]
# Per event loop (a worker's) and store: concurrent calls reserve their turns in one
# transaction (store.take_many), in the order they asked.
_TAKES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, WriteBatch[Take, float]]]
_TAKES = weakref.WeakKeyDictionary()


def _takes(store: Any) -> WriteBatch[Take, float]:
    batches = _TAKES.setdefault(asyncio.get_running_loop(), {})
    batch = batches.get(id(store))
    if batch is None or batch.owner is not store:
        batch = WriteBatch(lambda t: store.take(*t), store.take_many, owner=store)
        batches[id(store)] = batch
    return batch


async def _direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)  # in memory: no thread needed


def request_tokens(request: ModelRequest) -> int:
    """A cautious upper guess before the call: the prompt's estimate plus max_tokens."""
    size = len(request.system) + len(json.dumps(to_json(request.messages)))
    size += len(json.dumps(to_json(request.tools)))
    return estimate_tokens(size) + request.max_tokens


def billed_tokens(usage: Usage) -> int:
    return usage.total
