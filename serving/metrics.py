"""Prometheus metrics for the API: requests, latency, snapshot age, integrity failures.

Each app owns its registry (tests build many apps in one process). Under several uvicorn
workers, ``PROMETHEUS_MULTIPROC_DIR`` makes request metrics aggregate across workers
(``dynamargin serve`` sets it); the snapshot gauges are computed at scrape time from the
store, so they are the same whichever worker answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNMATCHED_ROUTE = "unmatched"


@dataclass(frozen=True)
class SnapshotGauge:
    """What the scrape reports about one asset's newest snapshot.

    Attributes
    ----------
    age_seconds
        Now minus ``published_at``.
    seconds_to_expiry
        ``valid_until`` minus now (negative once expired).
    multiplier
        The published margin multiplier.
    """

    age_seconds: float
    seconds_to_expiry: float
    multiplier: float


SnapshotGaugeSource = Callable[[], Mapping[str, SnapshotGauge]]


class ApiMetrics:
    """Request metrics plus scrape-time snapshot gauges for one app.

    Parameters
    ----------
    snapshot_gauges
        Called at every scrape; returns the newest snapshot's figures per asset.
    """

    def __init__(self, snapshot_gauges: SnapshotGaugeSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "dynamargin_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "dynamargin_http_request_duration_seconds",
            "Time from request to last response byte, by method and route template.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.integrity_failures = Counter(
            "dynamargin_integrity_failures",
            "Stored rows found not to verify (hash chain, signature or signed checkpoint), by "
            "asset ('store' when store-wide); counted once per distinct failure.",
            ("asset",),
            registry=self.registry,
        )
        # labels() takes a lock and validates on every call; children are cached instead.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._snapshots = _SnapshotCollector(snapshot_gauges)
        self.registry.register(self._snapshots)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def integrity_failure(self, asset: str | None, problems: list[str]) -> None:
        """Count one newly detected integrity failure of ``asset`` (``None``: the store)."""
        del problems  # logged by the caller; the metric only counts
        self.integrity_failures.labels(asset or "store").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type for ``GET /metrics``."""
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            registry.register(self._snapshots)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware that records every HTTP request in :class:`ApiMetrics`.

    Routes are labelled by their template (``/v1/risk/{asset}``), never the raw path, so
    arbitrary client paths cannot blow up the label cardinality.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)


class _SnapshotCollector(Collector):
    def __init__(self, source: SnapshotGaugeSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Declared without samples so registering does not hit the store.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._source())

    @staticmethod
    def _families(values: Mapping[str, SnapshotGauge] | None = None) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "dynamargin_snapshot_age_seconds",
            "Seconds since the newest snapshot of the asset was published.",
            labels=("asset",),
        )
        expiry = GaugeMetricFamily(
            "dynamargin_snapshot_seconds_to_expiry",
            "Seconds until the newest snapshot's valid_until (negative once expired).",
            labels=("asset",),
        )
        multiplier = GaugeMetricFamily(
            "dynamargin_margin_multiplier",
            "Margin multiplier of the newest snapshot.",
            labels=("asset",),
        )
        for asset, gauge in sorted((values or {}).items()):
            age.add_metric((asset,), gauge.age_seconds)
            expiry.add_metric((asset,), gauge.seconds_to_expiry)
            multiplier.add_metric((asset,), gauge.multiplier)
        yield age
        yield expiry
        yield multiplier
