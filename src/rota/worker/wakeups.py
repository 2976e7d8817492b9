"""In-process wake-ups: a run enqueued (or resumed) by this process nudges the workers
running in this process at once, instead of at their next poll."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Wakeups:
    """The wake-up callbacks of the workers in this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Callable[[], None]] = set()

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` on every wake-up until the returned callable unsubscribes it."""
        with self._lock:
            self._subscribers.add(wake)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.discard(wake)

        return unsubscribe

    def __call__(self) -> None:
        """Wake every subscriber: runs may be ready."""
        with self._lock:
            subscribers = list(self._subscribers)
        for wake in subscribers:
            wake()
