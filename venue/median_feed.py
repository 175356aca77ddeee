"""The venue's oracle print as the multi-source median (:mod:`features.oracle_price`).

Each asset's print is the median of several named feeds (Binance spot, Binance USDT-M, the
second venue), each itself a :class:`~venue.price_feed.PriceFeed`. What reaches the engine:

- every **healthy** feed becomes a named reference quote (with the time the feed observed
  it), so the engine's guard compares the print with their median; a dropped feed is logged,
  counted (``dynamargin_venue_oracle_feeds_dropped_total{asset, feed, state}``) and never
  shown to the engine;
- the median becomes the print, with the healthy feeds' half-range as its confidence band;
- a **guarded** median (too few healthy feeds) is printed with a confidence band as wide as
  the price itself, which every guard configuration refuses (``max_confidence_ratio < 1``):
  the asset is guarded at once, so the engine opens no new risk on it and liquidates nothing
  at its price until enough feeds agree.

:class:`MedianPriceFeed` computes the median from its feeds at each tick;
:class:`PublishedMedianFeed` serves medians computed elsewhere (the live ingest's
``CycleReport.prices``). Both give :class:`~venue.price_feed.PriceQuote` s, so the venue's tick
submits them like any print, under idempotency keys.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from features.oracle_price import FeedPrice, MedianConfig, MedianPrice, median_price
from features.store import MarketStore
from liquidation.engine import Engine
from liquidation.money import MICRO
from liquidation.rules.oracle_guard import GuardVerdict
from venue.metrics import VenueMetrics
from venue.price_feed import PriceFeed, PriceQuote, StorePriceFeed, micro_price, submit_quote

LOG = logging.getLogger("dynamargin.venue.oracle")

MIN_FEEDS = 3
"""Fewest feeds a median feed is built from: with three, one manipulated feed cannot move it
outside the honest feeds' range."""


def median_quote(median: MedianPrice, *, last_price: int | None = None) -> PriceQuote | None:
    """The print of one asset's median: price, confidence band and healthy references.

    Parameters
    ----------
    median
        The asset's median at its evaluation time.
    last_price
        The engine's last accepted print (micro-USD), re-printed as untrusted when a guarded
        median has no price at all, so the asset is guarded now rather than at the heartbeat.

    Returns
    -------
    PriceQuote or None
        ``None`` only when the median is guarded and there is no price to print at all.
    """
    references = tuple(
        (feed, micro_price(value, f"{median.asset} feed {feed}"), observed)
        for feed, value, observed in median.reference_feeds()
    )
    observed = max((v.ts_ms for v in median.verdicts if v.state == "healthy"), default=None)
    if median.guarded:
        candidates = sorted(
            v.price for v in median.verdicts if math.isfinite(v.price) and v.price > 0
        )
        if math.isfinite(median.price):
            value: float | None = median.price
        elif candidates:
            value = candidates[len(candidates) // 2]
        else:
            value = None
        printed = micro_price(value, f"{median.asset} median") if value is not None else last_price
        if printed is None:
            return None
        # Not trusted: a band as wide as the price is refused by every guard configuration.
        return PriceQuote(
            median.asset, printed, median.ts_ms, "median:guarded", printed, references
        )
    healthy = [v.price for v in median.healthy]
    half_range = (max(healthy) - min(healthy)) / 2
    return PriceQuote(
        median.asset,
        micro_price(median.price, f"{median.asset} median"),
        observed if observed is not None else median.ts_ms,
        "median",
        round(half_range * MICRO),
        references,
    )


def report_median(
    median: MedianPrice,
    metrics: VenueMetrics | None,
    seen: dict[tuple[str, str], str],
    log: logging.Logger = LOG,
) -> None:
    """Count every dropped feed and guarded median; log each feed's change of state.

    ``seen`` holds each ``(asset, feed)``'s last state, so a feed that stays stale is one log
    line (and one count per evaluation), not one line per tick.
    """
    for verdict in median.verdicts:
        key = (median.asset, verdict.feed)
        if verdict.state != "healthy":
            if metrics is not None:
                metrics.oracle_dropped.labels(median.asset, verdict.feed, verdict.state).inc()
            if seen.get(key) != verdict.state:
                log.warning("venue: oracle %s: feed %s dropped, %s: %s", median.asset,
                            verdict.feed, verdict.state, verdict.detail)  # fmt: skip
        seen[key] = verdict.state
    guarded_key = (median.asset, "")
    if median.guarded:
        if metrics is not None:
            metrics.oracle_guarded.labels(median.asset).inc()
        if seen.get(guarded_key) != "guarded":
            log.warning("venue: oracle %s guarded: %s", median.asset, median.reason)
    elif seen.get(guarded_key) == "guarded":
        log.info("venue: oracle %s unguarded again at %.8g", median.asset, median.price)
    seen[guarded_key] = "guarded" if median.guarded else "healthy"


class MedianPriceFeed:
    """A :class:`~venue.price_feed.PriceFeed` whose print is the median of named feeds.

    Parameters
    ----------
    feeds
        Feed name -> a price feed of the same assets (at least :data:`MIN_FEEDS`).
    assets
        Assets to quote.
    config
        The median's guards (maximum age, deviation, fewest healthy feeds).
    metrics
        Where dropped feeds and guarded medians are counted (the venue's metrics).

    Notes
    -----
    The median is evaluated at the tick's time, from each feed's newest quote known then.
    An asset none of whose feeds has quoted yet is absent, as with a single feed.
    """

    def __init__(
        self,
        feeds: Mapping[str, PriceFeed],
        assets: Sequence[str],
        config: MedianConfig | None = None,
        metrics: VenueMetrics | None = None,
        log: logging.Logger = LOG,
    ) -> None:
        if len(feeds) < MIN_FEEDS:
            raise ValueError(f"a median feed needs at least {MIN_FEEDS} feeds, got {sorted(feeds)}")
        self.feeds = dict(feeds)
        self.assets = tuple(assets)
        self.config = config or MedianConfig()
        self.metrics = metrics
        self.log = log
        self.last: dict[str, MedianPrice] = {}
        self._printed: dict[str, int] = {}
        self._seen: dict[tuple[str, str], str] = {}

    def quotes(self, at_ms: int) -> dict[str, PriceQuote]:
        """Each asset's median print at ``at_ms``."""
        quoted = {name: feed.quotes(at_ms) for name, feed in sorted(self.feeds.items())}
        found = {}
        for asset in self.assets:
            inputs = [
                FeedPrice(name, quotes[asset].price / MICRO, quotes[asset].observed_ms)
                for name, quotes in quoted.items()
                if asset in quotes
            ]
            if not inputs:
                continue
            median = median_price(asset, inputs, at_ms, self.config)
            if self.last.get(asset) != median:  # the same tick asked twice counts once
                report_median(median, self.metrics, self._seen, self.log)
            self.last[asset] = median
            # No price at all: its own last print re-printed as untrusted guards the asset now.
            quote = median_quote(median, last_price=self._printed.get(asset))
            if quote is not None:
                self._printed[asset] = quote.price
                found[asset] = quote
        return found


STORE_FEEDS: Mapping[str, tuple[str, str]] = {
    "binance-spot": ("bars", ""),
    "binance-usdm": ("perp", ""),
    "bybit-linear": ("perp", "@BYBIT"),
}
"""Oracle feed name -> (store dataset, label suffix), as the live ingest stores them
(:class:`features.sources.live.Feed`)."""


def store_median_feed(
    store: MarketStore,
    assets: Sequence[str],
    interval: str = "1h",
    config: MedianConfig | None = None,
    metrics: VenueMetrics | None = None,
) -> MedianPriceFeed:
    """The median of the store's three series: Binance spot, Binance USDT-M, the second venue.

    A series the store does not hold quotes nothing; with fewer than ``config.min_healthy``
    healthy feeds the asset is guarded.
    """
    feeds = {
        name: StorePriceFeed(store, assets, interval, dataset=dataset, suffix=suffix)
        for name, (dataset, suffix) in STORE_FEEDS.items()
    }
    return MedianPriceFeed(feeds, assets, config, metrics)


class PublishedMedianFeed:
    """A :class:`~venue.price_feed.PriceFeed` of medians computed elsewhere (the live ingest).

    :meth:`offer` hands it each cycle's medians (``CycleReport.prices``); :meth:`quotes`
    serves the newest one evaluated at or before the asked time.
    """

    def __init__(self, metrics: VenueMetrics | None = None, log: logging.Logger = LOG) -> None:
        self.metrics = metrics
        self.log = log
        self.medians: dict[str, MedianPrice] = {}
        self._printed: dict[str, int] = {}
        self._seen: dict[tuple[str, str], str] = {}

    def offer(self, prices: Mapping[str, MedianPrice]) -> None:
        """Take a cycle's medians; dropped feeds are logged and counted here."""
        for asset, median in sorted(prices.items()):
            report_median(median, self.metrics, self._seen, self.log)
            self.medians[asset] = median

    def quotes(self, at_ms: int) -> dict[str, PriceQuote]:
        """Each asset's newest median print evaluated at or before ``at_ms``."""
        found = {}
        for asset, median in sorted(self.medians.items()):
            if median.ts_ms > at_ms:
                continue
            quote = median_quote(median, last_price=self._printed.get(asset))
            if quote is not None:
                self._printed[asset] = quote.price
                found[asset] = quote
        return found


@dataclass(frozen=True)
class OracleFeedResult:
    """What one asset's median did to an engine.

    Attributes
    ----------
    asset
        The asset.
    printed
        The print in micro-USD (``None`` when there was no price to print).
    references
        Number of healthy reference quotes recorded.
    guarded_by_median
        The median was guarded (too few healthy feeds).
    verdict
        The engine's guard verdict on the print (``None`` when nothing was printed).
    """

    asset: str
    printed: int | None
    references: int
    guarded_by_median: bool
    verdict: GuardVerdict | None


def feed_engine(
    engine: Engine, prices: Mapping[str, MedianPrice], *, ts_ms: int, log: logging.Logger = LOG
) -> dict[str, OracleFeedResult]:
    """Submit each listed asset's median to ``engine`` (references, then the print).

    Parameters
    ----------
    engine
        The engine; assets it does not list are skipped.
    prices
        The median per asset.
    ts_ms
        Engine time of the update (epoch ms); a reference observed later is clamped to it.

    Returns
    -------
    dict
        One :class:`OracleFeedResult` per asset fed.
    """
    listed = set(engine.config.symbols)
    results: dict[str, OracleFeedResult] = {}
    for asset, median in sorted(prices.items()):
        if asset not in listed:
            continue
        quote = median_quote(median, last_price=engine.state.assets[asset].price)
        verdict = None
        if quote is not None:
            verdict = submit_quote(engine, quote, now_ms=ts_ms)
        if median.guarded:
            log.warning("oracle %s guarded for the engine: %s", asset, median.reason)
        results[asset] = OracleFeedResult(
            asset,
            None if quote is None else quote.price,
            0 if quote is None else len(quote.references),
            median.guarded,
            verdict,
        )
    return results


__all__ = [
    "MIN_FEEDS",
    "MedianPriceFeed",
    "OracleFeedResult",
    "PublishedMedianFeed",
    "feed_engine",
    "median_quote",
    "report_median",
    "store_median_feed",
]
