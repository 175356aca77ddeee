"""The venue's Prometheus metrics, on a registry of its own (one venue per registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

PREFIX = "dynamargin_venue"


class VenueMetrics:
    """Counters of polls, refusals and liquidations; gauges of what the venue holds."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            f"{PREFIX}_polls", "Polls of /v1/risk by result.", ["result"], registry=r
        )
        self.poll_failures = Counter(
            f"{PREFIX}_poll_failures",
            "Polls that failed: unreachable, http_5xx, http_status, no_trusted_key.",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            f"{PREFIX}_snapshots_refused",
            "Snapshots refused, by reason (see venue.snapshot_gate.REASONS).",
            ["reason", "asset"],
            registry=r,
        )
        self.applied = Counter(
            f"{PREFIX}_snapshots_applied", "Snapshots applied to the engine.", ["asset"], registry=r
        )
        self.key_mismatches = Counter(
            f"{PREFIX}_key_mismatches",
            "Polls of /v1/keys that named a key other than the pinned one.",
            registry=r,
        )
        self.ticks = Counter(f"{PREFIX}_ticks", "Ticks run.", registry=r)
        self.tick_errors = Counter(
            f"{PREFIX}_tick_errors", "Commands a tick could not run, by kind.", ["kind"], registry=r
        )
        self.liquidations = Counter(
            f"{PREFIX}_liquidations", "Waterfall steps run, by step.", ["step"], registry=r
        )
        self.prices = Counter(
            f"{PREFIX}_prices", "Oracle prints submitted, by guard verdict.", ["asset", "verdict"],
            registry=r,
        )  # fmt: skip
        self.oracle_dropped = Counter(
            f"{PREFIX}_oracle_feeds_dropped",
            "Feeds the median left out, by asset, feed and state (stale, deviating, invalid).",
            ["asset", "feed", "state"],
            registry=r,
        )
        self.oracle_guarded = Counter(
            f"{PREFIX}_oracle_guarded",
            "Median quotes with too few healthy feeds (the asset is guarded).",
            ["asset"],
            registry=r,
        )
        self.snapshot_lag = Gauge(
            f"{PREFIX}_snapshot_lag_seconds",
            "Venue clock minus published_at of the snapshot in force.",
            ["asset"],
            registry=r,
        )
        self.seconds_to_expiry = Gauge(
            f"{PREFIX}_snapshot_seconds_to_expiry",
            "valid_until of the snapshot in force minus the venue clock (negative: expired).",
            ["asset"],
            registry=r,
        )
        self.multiplier = Gauge(
            f"{PREFIX}_multiplier", "Multiplier new risk pays (target).", ["asset"], registry=r
        )
        self.accounts_at_risk = Gauge(
            f"{PREFIX}_accounts_at_risk", "Buckets with equity / MM below the at-risk line.",
            registry=r,
        )  # fmt: skip
        self.liquidatable = Gauge(
            f"{PREFIX}_liquidatable_accounts", "Buckets below maintenance.", registry=r
        )
        self.halted = Gauge(
            f"{PREFIX}_halted",
            "1 while the asset is in a volatility halt of the engine's circuit breaker.",
            ["asset"],
            registry=r,
        )
        self.fund = Gauge(f"{PREFIX}_insurance_fund_usd", "Insurance fund balance.", registry=r)
        self.initial_margin = Gauge(
            f"{PREFIX}_initial_margin_usd", "Initial margin of the whole book.", registry=r
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
