"""GET /metrics in Prometheus' text format: alert outcomes counted by this instance, and from the store
(shared by every instance) the runs by status and the queue depth, read at each scrape."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.store.base import Store

OUTCOMES = ("queued", "duplicate", "resolved", "no-match", "rejected", "suppressed")


class _StoreCollector(Collector):
    def __init__(self, store: Callable[[], Store]) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store()
        runs = GaugeMetricFamily("runbook_runs", "Runs in the store by status", labels=["status"])
        for status, count in sorted(store.runs_by_status().items()):
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily("runbook_queue_depth", "Queued runs not yet claimed", value=store.queue_depth())


class Metrics:
    def __init__(self, store: Callable[[], Store]) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter("runbook_alerts_received", "Alerts received", ["hook"], registry=self.registry)
        self.outcomes = Counter("runbook_alerts", "Alerts by outcome (queued, duplicate, rejected, suppressed...)",
                                ["hook", "outcome"], registry=self.registry)
        self.requests_refused = Counter("runbook_hook_requests_refused", "Hook requests refused, by HTTP status",
                                        ["status"], registry=self.registry)
        self.registry.register(_StoreCollector(store))

    def alert(self, hook: str, outcome: str) -> None:
        self.received.labels(hook).inc()
        self.outcomes.labels(hook, outcome).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
