"""RateLimitedModel: a shared requests-per-minute and tokens-per-minute limit in front of any
model, enforced across every worker through the store (see storage/limits.py).

A call first charges one request and an estimate of its tokens (the prompt's estimate plus
max_tokens); when the response arrives the token charge is corrected to what the provider
reported, so the limit tracks real usage. Limits are smooth: at most `burst_s` seconds' worth
of requests go out back to back, which also keeps clear of providers that enforce their
per-minute limits over shorter intervals.

A busy worker on a requests-only limit leases its turns (`TurnLease`): one transaction
reserves as many turns as its calls used in the last lease window, and its next calls take
them without a store call each. That transaction and its hand-off to a database thread cost
more CPU than anything else the limiter does (docs/benchmarks.md, issue 18).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import threading
import weakref
from collections import deque
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
        lease = self._lease(charges)
        if self.store is None:  # kept in this process
            wait = await call(store.take, *take)
        elif lease is not None:  # a turn of those this worker reserved for its next calls
            wait = await lease.turn(store, call, self.clock)
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

    def _lease(self, charges: dict[str, Charge]) -> TurnLease | None:
        """This worker's lease of turns on the shared limit, when one applies: a limit of
        requests only (a call's token charge is its own), at a rate that gives a lease
        window more than one turn."""
        if self.store is None or len(charges) != 1 or self.limit.tokens_per_minute:
            return None
        [(key, charge)] = charges.items()
        window = lease_window(charge)
        if window / charge.interval_s < 2:
            return None
        leases = _LEASES.setdefault(asyncio.get_running_loop(), {})
        lease = leases.get((id(self.store), key))
        if lease is None or lease.owner is not self.store or lease.charge != charge:
            lease = TurnLease(key, charge, owner=self.store)
            leases[(id(self.store), key)] = lease
        return lease


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


def lease_window(charge: Charge) -> float:
    """How long a leased turn stays usable after its start: 0.1 s, or less on a limit with
    a burst under 0.2 s (see TurnLease). At 3,000 requests a minute: 5 turns a lease, plus
    one for each call waiting."""
    return min(0.1, charge.burst_s / 2)


class TurnLease:
    """One worker's turns on a shared requests-only limit, reserved from the store several
    at a time (see the module docstring).

    A lease is exactly the takes its turns would have made one by one at the moment it was
    taken (`store.take_many`, one transaction): every worker still reserves from the same
    state in the store, so together they stay under the limit. It holds a turn for each call
    waiting for one, plus as many as this worker's calls took in the last window (up to a
    window's worth), so a quiet worker reserves one at a time, as without a lease.

    A turn not used within `window` seconds of its start expires: the limit loses it, it
    never goes out late in a burst. A leased turn can go out up to `window` after its start,
    so leases are reserved with the burst less the window: the requests sent never exceed
    `burst_s` seconds' worth back to back.

    Calls that arrive while a lease is being taken wait in line and are handed their turns
    in order of arrival; one lease is in flight at a time."""

    def __init__(self, key: str, charge: Charge, *, owner: object) -> None:
        self.key, self.charge, self.owner = key, charge, owner
        self.window = lease_window(charge)
        self._reserve = {key: Charge(charge.interval_s, charge.cost, charge.burst_s - self.window)}
        self._most = math.ceil(self.window / charge.interval_s)  # a window's worth of turns
        self._turns: deque[float] = deque()  # the starts of the turns leased and not yet used
        self._used: deque[float] = deque()  # when the turns of the last window were taken
        self._waiting: deque[asyncio.Future[float | None]] = deque()  # calls in line
        self._leasing = False

    async def turn(self, store: Any, call: Callable[..., Awaitable[Any]], clock: Clock) -> float:
        """The wait for this call's turn (0: go now)."""
        now = clock.now()
        turns = self._turns
        while turns and turns[0] < now - self.window:  # expired: the limit lost them
            turns.popleft()
        if turns and not self._waiting:
            start = turns.popleft()
        else:
            start = await self._next_turn(store, call, clock)
        self._used.append(now)
        return max(0.0, start - clock.now())

    async def _next_turn(
        self, store: Any, call: Callable[..., Awaitable[Any]], clock: Clock
    ) -> float:
        while self._leasing:  # wait in line for the lease in flight
            start = await self._in_line()
            if start is not None:
                return start
            # None: the lease ran out before this call's turn; it takes the next one
        return await self._lease(store, call, clock.now())

    async def _in_line(self) -> float | None:
        waiter: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a turn it will not use
                self._give_back(waiter.result())
            raise

    async def _lease(self, store: Any, call: Callable[..., Awaitable[Any]], now: float) -> float:
        """Lease turns for this call, the calls in line and the next ones; hand them out."""
        self._leasing = True
        try:
            size = 1 + len(self._waiting) + self._recent(now)
            waits: list[float] = await call(store.take_many, [(self._reserve, now)] * size)
        except BaseException:
            self._leasing = False
            self._next_in_line(None)  # the first in line leases for itself instead
            raise
        self._leasing = False
        self._turns.extend(now + wait for wait in waits)
        mine = self._turns.popleft()
        while self._waiting and self._turns:
            self._next_in_line(self._turns.popleft())
        self._next_in_line(None)  # any still in line arrived too late: the first leases next
        return mine

    def _next_in_line(self, start: float | None) -> None:
        """Hand `start` to the first call in line (None: that call leases next)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # else cancelled while in line
                waiter.set_result(start)
                return
        if start is not None:
            self._give_back(start)

    def _give_back(self, start: float | None) -> None:
        if start is not None:
            self._turns.appendleft(start)

    def _recent(self, now: float) -> int:
        """The turns this worker took in the last window, less one: the next calls'."""
        used = self._used
        while used and used[0] < now - self.window:
            used.popleft()
        return min(len(used), self._most - 1)


_LEASES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], TurnLease]] = (
    weakref.WeakKeyDictionary()
)


async def _direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)  # in memory: no thread needed


def request_tokens(request: ModelRequest) -> int:
    """A cautious upper guess before the call: the prompt's estimate plus max_tokens."""
    size = len(request.system) + len(json.dumps(to_json(request.messages)))
    size += len(json.dumps(to_json(request.tools)))
    return estimate_tokens(size) + request.max_tokens


def billed_tokens(usage: Usage) -> int:
    return usage.total
