"""Feed the multi-source oracle median into the liquidation engine's oracle guard.

:func:`features.oracle_price.median_price` takes the median of several price feeds (Binance
spot, Binance USDT-M, the second venue) and drops the stale and deviating ones. This module
hands its result to :class:`liquidation.engine.Engine` through the engine's public inputs:

- every **healthy** feed becomes a named reference quote
  (:meth:`~liquidation.engine.Engine.update_reference`, with the time the feed observed it),
  so the engine's guard compares its primary print with their median; a dropped feed is
  never shown to the engine;
- the median becomes the primary print (:meth:`~liquidation.engine.Engine.update_price`),
  with the healthy feeds' half-range as its confidence band;
- a **guarded** median (too few healthy feeds) is printed with a confidence band as wide as
  the price itself, which the guard refuses: the asset is guarded at once, so the engine
  opens no new risk on it and liquidates nothing at its price until enough feeds agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from features.oracle_price import MedianPrice
from liquidation.engine import Engine
from liquidation.money import MICRO
from liquidation.oracle import GuardVerdict
from pipelines.live_loop import LivePublication

logger = logging.getLogger("dynamargin.live.oracle")


@dataclass(frozen=True)
class OracleFeedResult:
    """What one asset's median did to the engine.

    Attributes
    ----------
    asset
        The asset.
    printed
        The primary print in micro-USD (``None`` when there was no price to print).
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


def to_micro(value: float) -> int:
    """A USD price as the engine's integer micro-USD (rounded to the nearest unit)."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"price must be finite and positive, got {value!r}")
    return round(value * MICRO)


def feed_engine(
    engine: Engine, prices: Mapping[str, MedianPrice], *, ts_ms: int
) -> dict[str, OracleFeedResult]:
    """Record each asset's healthy feeds as references, then print its median.

    Parameters
    ----------
    engine
        The venue's engine; assets it does not list are skipped.
    prices
        The oracle median per asset (:attr:`features.live.ingest.CycleReport.prices`).
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
        references = median.reference_feeds()
        for feed, value, observed in references:
            engine.update_reference(
                asset, feed, to_micro(value), ts=ts_ms, observed_ms=min(observed, ts_ms)
            )
        printed, confidence = _print_of(median)
        if printed is None and median.guarded:
            # No usable price at all: re-print the last accepted one as untrusted, so the
            # asset is guarded now rather than after the engine's heartbeat.
            printed = engine.state.assets[asset].price
            confidence = printed or 0
        verdict = None
        if printed is not None:
            verdict = engine.update_price(asset, printed, ts=ts_ms, confidence=confidence)
        if median.guarded:
            logger.warning("oracle %s guarded for the engine: %s", asset, median.reason)
        results[asset] = OracleFeedResult(asset, printed, len(references), median.guarded, verdict)
    return results


def _print_of(median: MedianPrice) -> tuple[int | None, int]:
    """The primary print and its confidence band (micro-USD)."""
    if median.guarded:
        # Whatever price is left is not trusted: a band as wide as the price is refused by
        # every guard configuration (max_confidence_ratio < 1), so the asset is guarded.
        candidates = [v.price for v in median.verdicts if math.isfinite(v.price) and v.price > 0]
        value = (
            median.price
            if math.isfinite(median.price)
            else (sorted(candidates)[len(candidates) // 2] if candidates else math.nan)
        )
        if not math.isfinite(value):
            return None, 0
        printed = to_micro(value)
        return printed, printed
    healthy = [v.price for v in median.healthy]
    printed = to_micro(median.price)
    half_range = (max(healthy) - min(healthy)) / 2 if healthy else 0.0
    return printed, round(half_range * MICRO)


def oracle_consumer(engine: Engine) -> Callable[[LivePublication], dict[str, OracleFeedResult]]:
    """A live-loop consumer that feeds every batch's oracle medians into ``engine``."""

    def consume(publication: LivePublication) -> dict[str, OracleFeedResult]:
        ts_ms = int(publication.venue_time.value // 1_000_000)
        return feed_engine(engine, publication.prices, ts_ms=ts_ms)

    return consume


__all__ = ["OracleFeedResult", "feed_engine", "oracle_consumer", "to_micro"]
