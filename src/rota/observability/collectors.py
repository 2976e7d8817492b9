"""Gauges read from the store when Prometheus scrapes, and the registry a rota process serves.

`StoreGauges` asks the store for the unfinished runs, the queue, the approvals waiting and
the shared budgets' spending, and keeps the answer for `ttl_s` seconds, so that several
scrapers (or a scrape every second) cost one round of queries. A store that does not answer
is no reason to fail the scrape: the counters of the process are still served, with
`rota_store_up 0`. The queries run on one thread of their own, so that the store keeps one
connection for them whichever thread scrapes.

`registry(store, budgets)` is what `/metrics` and `--metrics-port` serve: the process's default
registry (every counter and histogram) followed by those gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..cost.budgets import SharedBudget
from ..cost.pricing import from_pusd
from ..storage.base import GaugeReader

log = logging.getLogger("rota.metrics")

DEFAULT_TTL_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Snapshot:
    families: list[Metric] = field(default_factory=list)
    taken: float | None = None  # when it was read, by the collector's clock


class StoreGauges(Collector):
    """The store's view of the system as gauges, cached for `ttl_s` seconds. `store` is
    called at each scrape (the App opens its store on first use, not when the API starts)."""

    def __init__(
        self,
        store: Callable[[], GaugeReader],
        budgets: Sequence[SharedBudget] = (),
        *,
        ttl_s: float = DEFAULT_TTL_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.budgets = budgets  # the App's list: budgets declared later count too
        self.ttl_s = ttl_s
        self.now = now
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rota-metrics-db")

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # concurrent scrapes share one round of queries
            now = self.now()
            taken = self._snapshot.taken
            if taken is None or abs(now - taken) >= self.ttl_s:  # abs: the clock went back
                self._snapshot = _Snapshot(self._read(), now)
            yield from self._snapshot.families

    def close(self) -> None:
        self._thread.shutdown(wait=False)

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("rota_store_up", "1 when the store answered the last scrape.")
        try:
            families = self._thread.submit(self._query).result()
        except Exception as exc:  # served without the store's figures; the next scrape retries
            log.warning("metrics: the store did not answer (%s: %s)", type(exc).__name__, exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _query(self) -> list[Metric]:
        now = self.now()
        return [*self._runs(now), *self._approvals(now), *self._budgets(now)]

    def _runs(self, now: float) -> list[Metric]:
        live = GaugeMetricFamily(
            "rota_runs_active",
            "Runs not finished yet, by job, kind and state (ENQUEUED, RUNNING, WAITING).",
            labels=["job", "kind", "state"],
        )
        depth = GaugeMetricFamily(
            "rota_queue_depth", "Queued runs due to start now, by job.", labels=["job"]
        )
        oldest = GaugeMetricFamily(
            "rota_queue_oldest_due_age_seconds",
            "How long the oldest due queued run of each job has waited to start.",
            labels=["job"],
        )
        for group in self.store().live_runs(now):
            live.add_metric([group.name, group.kind, group.state], group.count)
            if group.state != "ENQUEUED":
                continue
            depth.add_metric([group.name], group.due)
            if group.oldest_due is not None:
                oldest.add_metric([group.name], max(0.0, now - group.oldest_due))
        return [live, depth, oldest]

    def _approvals(self, now: float) -> list[Metric]:
        waiting = self.store().waiting_approvals()
        count = GaugeMetricFamily(
            "rota_approvals_waiting", "Approval requests waiting for a decision."
        )
        count.add_metric([], waiting.count)
        age = GaugeMetricFamily(
            "rota_approvals_oldest_waiting_seconds",
            "How long the oldest approval request has waited (0 when none waits).",
        )
        age.add_metric([], 0.0 if waiting.oldest is None else max(0.0, now - waiting.oldest))
        return [count, age]

    def _budgets(self, now: float) -> list[Metric]:
        spent = GaugeMetricFamily(
            "rota_budget_spent",
            "What each shared budget has spent in its current period, by unit "
            "(usd, tokens, requests).",
            labels=["budget", "per", "unit"],
        )
        limit = GaugeMetricFamily(
            "rota_budget_limit",
            "Each shared budget's limit per period, for the units it limits.",
            labels=["budget", "per", "unit"],
        )
        for budget in self.budgets:
            charge = budget.charge(now)
            pusd, tokens, requests = self.store().budget_used(charge)
            used = {"usd": float(from_pusd(pusd)), "tokens": tokens, "requests": requests}
            limits = {
                "usd": None if charge.limit_pusd is None else float(from_pusd(charge.limit_pusd)),
                "tokens": charge.limit_tokens,
                "requests": charge.limit_requests,
            }
            for unit, value in used.items():
                spent.add_metric([budget.key, budget.per, unit], value)
                cap = limits[unit]
                if cap is not None:
                    limit.add_metric([budget.key, budget.per, unit], cap)
        return [spent, limit]


class _Together(Collector):
    """The default registry's metrics, then the store's gauges, as one collector."""

    def __init__(self, gauges: StoreGauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.gauges.collect()


def registry(gauges: StoreGauges) -> CollectorRegistry:
    """What a rota process serves: its own counters and histograms, and the store's gauges."""
    served = CollectorRegistry(auto_describe=False)
    served.register(_Together(gauges))
    return served


def exposition(served: CollectorRegistry) -> bytes:
    """The text exposition format of `served` (blocking: the gauges may query the store)."""
    return generate_latest(served)
