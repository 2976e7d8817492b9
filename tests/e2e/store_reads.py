"""What the end-to-end tests read straight from the store under test, each through a store
of their own that they close at once."""

from __future__ import annotations

from rota.storage import SqlStore


def count_runs(url: str) -> int:
    store = SqlStore(url)
    try:
        return sum(store.count_states().values())
    finally:
        store.close()
