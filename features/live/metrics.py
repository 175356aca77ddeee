"""Prometheus counters of the live data path: requests, retries, faults, bars, staleness.

One :class:`LiveMetrics` is shared by the sources and the runner of one process. It owns its
registry (tests build many in one process), and :meth:`LiveMetrics.exposition` renders the
text format that ``dynamargin ingest live --metrics-port`` serves.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

logger = logging.getLogger("dynamargin.live.sources")


class LiveMetrics:
    """Counters and gauges of live ingestion.

    Attributes
    ----------
    registry
        The registry holding every metric below.
    requests
        ``dynamargin_live_requests_total{source, endpoint, outcome}``: every HTTP answer or
        failure (``ok``, ``http_429``, ``http_503``, ``timeout``, ``network``).
    retries
        ``dynamargin_live_retries_total{source, endpoint, reason}``: retries by reason
        (``rate_limited``, ``server_error``, ``timeout``, ``network``).
    rate_limit_waits
        ``dynamargin_live_rate_limit_wait_seconds_total{source}``: time spent waiting for the
        request-weight budget or a ``Retry-After``.
    failures
        ``dynamargin_live_request_failures_total{source, endpoint}``: requests given up after
        every retry, or refused.
    bars_added
        ``dynamargin_live_rows_added_total{feed, asset}``: new rows stored.
    backfilled
        ``dynamargin_live_rows_backfilled_total{feed, asset}``: rows stored later than the
        cycle right after their close (recovery after an outage, late bars, filled gaps).
    quarantined
        ``dynamargin_live_rows_quarantined_total{feed, asset}``: rows rejected by validation.
    unclosed
        ``dynamargin_live_unclosed_bars_dropped_total{feed}``: bars a venue returned before
        their close, dropped.
    late
        ``dynamargin_live_late_bars_total{feed, asset}``: expected bars not there at the
        first poll after their close.
    gaps
        ``dynamargin_live_gaps_total{feed, asset}``: bars missing between present ones.
    conflicts
        ``dynamargin_live_conflicts_total{feed, asset}``: rows that differ from the stored
        version (the store is left unchanged).
    stale
        ``dynamargin_live_feed_stale_total{feed, asset}``: transitions of a feed to stale.
    oracle_dropped
        ``dynamargin_oracle_feeds_dropped_total{feed, state}``: price feeds left out of the
        oracle median (``stale``, ``deviating``, ``invalid``).
    oracle_guarded
        ``dynamargin_oracle_guarded_total{asset}``: median evaluations that guarded the asset.
    data_age
        ``dynamargin_live_data_age_seconds{asset}``: venue time minus the close of the
        newest bar of the asset's required feeds.
    cycles
        ``dynamargin_live_cycles_total``: ingest cycles run.
    publications
        ``dynamargin_live_publications_total{asset, status}``: snapshots the live loop
        published, by status (``ok``, ``stale``, ``fallback``, ``halted``).
    publish_failures
        ``dynamargin_live_publish_failures_total{stage}``: live-loop steps that failed (the
        previous batch stays served; the next close tries again).
    stage_seconds
        ``dynamargin_live_stage_seconds{stage}``: duration of each step of the newest
        publication (``ingest``, ``features``, ``forecast``, ``publish``, ``total``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "dynamargin_live_requests",
            "Live source HTTP requests by outcome.",
            ("source", "endpoint", "outcome"),
            registry=reg,
        )
        self.retries = Counter(
            "dynamargin_live_retries",
            "Live source request retries by reason.",
            ("source", "endpoint", "reason"),
            registry=reg,
        )
        self.rate_limit_waits = Counter(
            "dynamargin_live_rate_limit_wait_seconds",
            "Seconds spent waiting for the request-weight budget or a Retry-After.",
            ("source",),
            registry=reg,
        )
        self.failures = Counter(
            "dynamargin_live_request_failures",
            "Live source requests given up after every retry, or refused.",
            ("source", "endpoint"),
            registry=reg,
        )
        self.bars_added = Counter(
            "dynamargin_live_rows_added",
            "Rows added to the store by live ingestion.",
            ("feed", "asset"),
            registry=reg,
        )
        self.backfilled = Counter(
            "dynamargin_live_rows_backfilled",
            "Rows stored after the cycle that followed their close (recovery, late bars, gaps).",
            ("feed", "asset"),
            registry=reg,
        )
        self.quarantined = Counter(
            "dynamargin_live_rows_quarantined",
            "Live rows rejected by validation.",
            ("feed", "asset"),
            registry=reg,
        )
        self.unclosed = Counter(
            "dynamargin_live_unclosed_bars_dropped",
            "Bars returned by a venue before their close, dropped.",
            ("feed",),
            registry=reg,
        )
        self.late = Counter(
            "dynamargin_live_late_bars",
            "Expected bars missing at the first poll after their close.",
            ("feed", "asset"),
            registry=reg,
        )
        self.gaps = Counter(
            "dynamargin_live_gaps",
            "Bars missing between present ones in a fetch.",
            ("feed", "asset"),
            registry=reg,
        )
        self.conflicts = Counter(
            "dynamargin_live_conflicts",
            "Rows that differ from their stored version.",
            ("feed", "asset"),
            registry=reg,
        )
        self.stale = Counter(
            "dynamargin_live_feed_stale",
            "Transitions of a feed to stale.",
            ("feed", "asset"),
            registry=reg,
        )
        self.oracle_dropped = Counter(
            "dynamargin_oracle_feeds_dropped",
            "Price feeds left out of the oracle median, by reason.",
            ("feed", "state"),
            registry=reg,
        )
        self.oracle_guarded = Counter(
            "dynamargin_oracle_guarded",
            "Oracle median evaluations that guarded the asset.",
            ("asset",),
            registry=reg,
        )
        self.data_age = Gauge(
            "dynamargin_live_data_age_seconds",
            "Venue time minus the close of the newest bar of the asset's required feeds.",
            ("asset",),
            registry=reg,
        )
        self.cycles = Counter("dynamargin_live_cycles", "Live ingest cycles run.", registry=reg)
        self.publications = Counter(
            "dynamargin_live_publications",
            "Snapshots published by the live loop, by status.",
            ("asset", "status"),
            registry=reg,
        )
        self.publish_failures = Counter(
            "dynamargin_live_publish_failures",
            "Live-loop steps that failed; the previous batch stays served.",
            ("stage",),
            registry=reg,
        )
        self.stage_seconds = Gauge(
            "dynamargin_live_stage_seconds",
            "Duration of each step of the newest live publication.",
            ("stage",),
            registry=reg,
        )

    def note_unclosed(self, feed: str, asset: str, count: int) -> None:
        """Count and log bars a venue returned before their close (they are dropped)."""
        if count:
            self.unclosed.labels(feed).inc(count)
            logger.info(
                "%s %s: dropped %d bar(s) the venue returned before their close",
                feed,
                asset,
                count,
            )

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (0 when it was never touched), for logs and tests."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)


__all__ = ["LiveMetrics"]
