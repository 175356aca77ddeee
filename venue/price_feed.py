"""Oracle prices for the venue: a small protocol, and its market-data-store implementation.

The venue asks a :class:`PriceFeed` for the newest quote of each asset known at a time. The
store-backed feed reads closed bars from the Parquet market store: a bar's close becomes known
at ``ts + interval`` (the Bars contract), so a quote is never taken from the future. The live
venue can instead take the multi-source median of several such feeds
(:mod:`venue.median_feed`), whose quotes carry a confidence band and reference quotes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.store import MarketStore
from liquidation.engine import Engine
from liquidation.money import MAX_PRICE, MICRO
from liquidation.rules.oracle_guard import GuardVerdict
from venue.errors import PriceFeedError

RELOAD_MS = 60_000
"""Shortest venue time between two reads of the store."""
STORE_DATASETS = ("bars", "perp")
"""Store series a :class:`StorePriceFeed` reads: spot bars and perpetual bars."""


@dataclass(frozen=True)
class PriceQuote:
    """One oracle print.

    Attributes
    ----------
    asset
        Symbol as in the RiskSnapshot (``BTCUSDT``).
    price
        Micro-USD per unit (the engine's integer price).
    observed_ms
        When the price became known, epoch ms (a bar's close time).
    source
        Where it came from, for the log (``store:1h``).
    confidence
        Confidence band of the print, micro-USD (0: a single trusted source).
    references
        Named reference quotes ``(feed, micro-USD, observed ms)`` recorded before the print,
        so the engine's guard compares the print with them (a median's healthy feeds).
    """

    asset: str
    price: int
    observed_ms: int
    source: str
    confidence: int = 0
    references: tuple[tuple[str, int, int], ...] = ()


class PriceFeed(Protocol):
    """Anything that gives the newest quote per asset known at a time."""

    def quotes(self, at_ms: int) -> Mapping[str, PriceQuote]:
        """Newest quote of each asset observed at or before ``at_ms``; absent if none."""
        ...


def micro_price(value: float, what: str) -> int:
    """A float price as integer micro-USD, refusing NaN, infinities and non-positive values."""
    if not np.isfinite(value) or value <= 0:
        raise PriceFeedError(f"{what}: price {value!r} is not a positive finite number")
    micro = int((Decimal(repr(float(value))) * MICRO).to_integral_value())
    if not 0 < micro <= MAX_PRICE:
        raise PriceFeedError(f"{what}: price {value!r} is outside (0, {MAX_PRICE / MICRO:g}] USD")
    return micro


def submit_quote(engine: Engine, quote: PriceQuote, *, now_ms: int) -> GuardVerdict:
    """Record a quote's references, then print it, each under an idempotency key.

    Parameters
    ----------
    engine
        The venue's engine.
    quote
        The print; its references are recorded first (observed no later than ``now_ms``).
    now_ms
        Engine time of the commands (epoch ms).

    Returns
    -------
    GuardVerdict
        The guard's verdict on the print.

    Notes
    -----
    Keys derive from the input (``price:<asset>:<observed ms>``, ``ref:<asset>:<feed>:<observed
    ms>``), so repeating an interrupted tick repeats nothing.
    """
    for feed, value, observed in quote.references:
        key = f"ref:{quote.asset}:{feed}:{observed}"
        if key not in engine.state.keys:
            engine.update_reference(
                quote.asset, feed, value, ts=now_ms, observed_ms=min(observed, now_ms), key=key
            )
    return engine.update_price(
        quote.asset,
        quote.price,
        ts=now_ms,
        confidence=quote.confidence,
        key=f"price:{quote.asset}:{quote.observed_ms}",
    )


class StorePriceFeed:
    """Close prices of closed bars in the market store.

    Parameters
    ----------
    store
        The Parquet market store (``<workdir>/store``).
    assets
        Assets to quote.
    interval
        Bar interval read (``1h``).
    dataset
        ``bars`` (spot, Binance) or ``perp`` (perpetual bars).
    suffix
        Store label suffix of the series (``@BYBIT``: the second venue's), dropped from the
        quoted asset.

    Notes
    -----
    Bars are read once and again only when a time past the newest cached close is asked
    for, so a long-running venue picks up bars ingested while it runs.
    """

    def __init__(
        self,
        store: MarketStore,
        assets: Sequence[str],
        interval: str = "1h",
        dataset: str = "bars",
        suffix: str = "",
    ) -> None:
        if dataset not in STORE_DATASETS:
            raise PriceFeedError(f"dataset must be one of {STORE_DATASETS}, got {dataset!r}")
        self.dataset = dataset
        self.suffix = suffix
        self.store = store
        self.assets = tuple(assets)
        self.interval = interval
        self._bar_ms = int(interval_to_timedelta(interval) / pd.Timedelta(milliseconds=1))
        self._close_ms: dict[str, np.ndarray] = {}
        self._close: dict[str, np.ndarray] = {}
        self._newest_ms = -1
        self._loaded_at: int | None = None

    @property
    def bar_ms(self) -> int:
        """Bar length, ms."""
        return self._bar_ms

    @property
    def source(self) -> str:
        if self.dataset == "bars" and not self.suffix:
            return f"store:{self.interval}"
        return f"store:{self.dataset}{self.suffix}:{self.interval}"

    def quotes(self, at_ms: int) -> dict[str, PriceQuote]:
        """The close of each asset's newest bar whose close time is at or before ``at_ms``."""
        # Re-read only when a newer bar may have closed, and at most once a minute of venue
        # time: a live venue ticks every few seconds, bars close once an hour.
        due = self._newest_ms < 0 or at_ms >= self._newest_ms + self._bar_ms
        if due and (self._loaded_at is None or abs(at_ms - self._loaded_at) >= RELOAD_MS):
            self._loaded_at = at_ms
            self._load()
        found = {}
        for asset in self.assets:
            times = self._close_ms.get(asset)
            if times is None or not len(times):
                continue
            i = int(np.searchsorted(times, at_ms, side="right")) - 1
            if i < 0:
                continue
            found[asset] = PriceQuote(
                asset=asset,
                price=micro_price(float(self._close[asset][i]), f"{asset} bar closing {times[i]}"),
                observed_ms=int(times[i]),
                source=self.source,
            )
        return found

    def bar_closes(self, asset: str) -> np.ndarray:
        """Close times (epoch ms) of the asset's stored bars, oldest first."""
        if self._newest_ms < 0:
            self._load()
        return self._close_ms.get(asset, np.array([], dtype=np.int64))

    def _load(self) -> None:
        read = self.store.read_bars if self.dataset == "bars" else self.store.read_perp
        bars = read(self.interval, [f"{a}{self.suffix}" for a in self.assets])
        self._close_ms, self._close = {}, {}
        newest = -1
        for label, rows in bars.groupby("asset", sort=False):
            asset = str(label).removesuffix(self.suffix) if self.suffix else str(label)
            rows = rows.sort_values("ts")
            # Via a Timedelta, so the stored time unit (ns, us or ms) does not matter.
            since_epoch = rows["ts"] - pd.Timestamp(0, tz="UTC")
            opened = (since_epoch // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)
            closes = opened + self._bar_ms
            self._close_ms[asset] = closes
            self._close[asset] = rows["close"].to_numpy(dtype=float)
            newest = max(newest, int(closes[-1]))
        self._newest_ms = newest
