"""The worker's audit batch: the records runs append on the event loop (run.started,
run.refused), written in batches by a database thread in the same transaction as each
completion flush, or sooner when a run audits something of its own."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

from ..storage.audit import AuditEntry
from ..storage.base import AuditLog


class AuditBatch:
    """Pending audit records. `append` takes them on the loop while a database thread
    drains them in `write`. Everything a run audits goes through `write`, so that a run's
    own records always follow its run.started record in the chain."""

    def __init__(self, store: AuditLog, wanted: Callable[[], None]) -> None:
        self.store = store
        self._wanted = wanted  # asks for a flush soon (the worker's flush loop)
        self._entries: collections.deque[AuditEntry] = collections.deque()
        self._lock = threading.Lock()

    def append(self, entry: AuditEntry) -> None:
        """Queue a record, written with the next flush."""
        self._entries.append(entry)
        self._wanted()

    def write(self, entries: Sequence[AuditEntry] = ()) -> None:
        """Append the pending records, then `entries`, in one transaction (blocking: call
        it from a database thread)."""
        with self.taken() as batch:
            self.store.audit_many([*batch, *entries])

    @contextlib.contextmanager
    def taken(self) -> Iterator[list[AuditEntry]]:
        """The pending records, for the caller to append in its own transaction (the
        worker's completion flush): put back in order if the block raises, which it must
        do if its transaction did not commit. Other writers wait meanwhile, so that a run's
        own records cannot overtake its run.started record."""
        with self._lock:
            batch: list[AuditEntry] = []
            with contextlib.suppress(IndexError):
                while True:
                    batch.append(self._entries.popleft())
            try:
                yield batch
            except BaseException:
                self._entries.extendleft(reversed(batch))
                raise

    def __bool__(self) -> bool:
        return bool(self._entries)
