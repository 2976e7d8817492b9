"""`Outage`: how a long-running process (worker, scheduler, API server) meets its database
going away: one warning line when it goes, one line when it is back, and a capped,
jittered back-off between tries in the meantime.

A restart of PostgreSQL makes every loop and every request of a process fail many times a
second; a line (let alone a traceback) for each would bury the one thing an operator needs
to know, which is when the database went and when it came back.
"""

from __future__ import annotations

import logging
import threading
import time

from ..backoff import backoff_delay
from ..errors import StoreUnavailable


class Outage:
    """The database's availability as one process sees it. `failed(exc)` after a database
    call failed returns how long to wait before trying again; `worked()` after one
    succeeded. StoreUnavailable (the database is away for now) logs one warning when an
    outage begins and one info line when it ends; any other error is a bug worth its
    traceback, logged every time (still backed off, so that it cannot spin).

    Thread-safe: a process's loops and request threads may share one."""

    def __init__(
        self, logger: logging.Logger, what: str, *, base_s: float = 1.0, cap_s: float = 5.0
    ) -> None:
        self.logger = logger
        self.what = what
        self.base_s = base_s
        self.cap_s = max(cap_s, base_s)
        self.failures = 0  # consecutive failed tries, in this outage
        self.since = 0.0  # when the outage began (monotonic)
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the database was unavailable at the last try."""
        return self.failures > 0

    def failed(self, exc: BaseException) -> float:
        """Note a failed database call; returns the pause before the next try: the capped
        exponential back-off with jitter of backoff.py, so that processes that lost the
        same database do not all come back at the same instant."""
        with self._lock:
            self.failures += 1
            first = self.failures == 1
            if first:
                self.since = time.monotonic()
            tries = self.failures
        if not isinstance(exc, StoreUnavailable):
            self.logger.error("%s failed; retrying", self.what, exc_info=exc)
        elif first:
            self.logger.warning(
                "%s: database unavailable (%s); retrying with back-off until it is back",
                self.what,
                _detail(exc),
            )
        else:
            self.logger.debug("%s: database still unavailable (%s)", self.what, _detail(exc))
        return backoff_delay(min(tries, 16), self.base_s, cap_s=self.cap_s)

    def worked(self, note: str = "") -> None:
        """Note a database call that succeeded: ends the outage, if there was one, with one
        line saying how long it lasted (and `note`, e.g. what it cost)."""
        with self._lock:
            tries, self.failures = self.failures, 0
            lasted = time.monotonic() - self.since
        if tries:
            self.logger.info(
                "%s: database works again after %.1fs (%d failed tries)%s",
                self.what,
                lasted,
                tries,
                f"; {note}" if note else "",
            )


def _detail(exc: StoreUnavailable) -> str:
    """What failed, without repeating "the database is unavailable" in a line that says so."""
    return str(exc).removeprefix(StoreUnavailable.PREFIX)
