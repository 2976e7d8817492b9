"""A process-wide, briefly cached view of the principals table.

Workers look up a run's principal before every run and agents look up scopes before every
tool call; reading the table each time would add a query per run. The whole (small) table is
read at most once per `ttl` seconds instead, so a change made with `rota principals` (a
revoked scope, a disabled principal) takes effect everywhere within `ttl` (1 s by default).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..storage.base import PrincipalStore
from .principals import Principal, PrincipalDisabled, UnknownPrincipal


class Directory:
    def __init__(
        self, store: PrincipalStore, ttl: float = 1.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._now = now
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._by_name: dict[str, Principal] = {}

    def get(self, name: str) -> Principal | None:
        return self._table().get(name)

    def require(self, name: str) -> Principal:
        """The principal a run acts as; refused when unknown or disabled."""
        table = self._table()
        principal = table.get(name)
        if principal is None:
            raise UnknownPrincipal(name, table)
        if principal.disabled:
            raise PrincipalDisabled(name)
        return principal

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def _table(self) -> dict[str, Principal]:
        with self._lock:
            if self._now() - self._loaded_at >= self.ttl:
                self._by_name = {p.name: p for p in self.store.principals()}
                self._loaded_at = self._now()
            return self._by_name


_directories: weakref.WeakKeyDictionary[Any, Directory] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def directory_for(store: PrincipalStore) -> Directory:
    """The directory shared by everything in this process that uses `store`."""
    with _guard:
        found = _directories.get(store)
        if found is None:
            found = _directories[store] = Directory(store)
        return found
