"""The oracle median through the venue's tick: a guarded asset is never liquidated.

Three feeds (Binance spot, USDT-M, the second venue) quote BTC; the venue's
:class:`~venue.median_feed.MedianPriceFeed` takes their median every tick, and
:meth:`venue.service.Venue.tick` submits it with the healthy feeds as references. A trader
long 1 BTC at 50,000 with 6,000 of collateral is below maintenance under about 46,800. Then
the feeds report a crash, some of them stale, broken or manipulated.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from features.oracle_price import MedianConfig
from liquidation.errors import LiquidationCoreError
from liquidation.money import MICRO, price, qty, usd
from tests.venue.conftest import ASSETS, World
from venue.median_feed import MedianPriceFeed, store_median_feed
from venue.metrics import VenueMetrics
from venue.price_feed import PriceQuote
from venue.service import Venue
from venue.settings import VenueSettings

BTC = "BTCUSDT"
HOUR = 3_600_000
T0, T1 = HOUR, 2 * HOUR
"""Venue times of the calm tick and of the crash tick (ms)."""
FEEDS = ("binance-spot", "binance-usdm", "bybit-linear")
CONFIG = MedianConfig(max_age_ms=600_000, max_deviation=0.02, min_healthy=2)


class FixedFeed:
    """One named feed: the quote it holds, given once observed (a real bar feed's contract)."""

    def __init__(self) -> None:
        self.quote: PriceQuote | None = None

    def quotes(self, at_ms: int) -> Mapping[str, PriceQuote]:
        if self.quote is None or self.quote.observed_ms > at_ms:
            return {}
        return {self.quote.asset: self.quote}


def _quote(value: float, observed_ms: int) -> PriceQuote:
    # The feed's raw value, unchecked: an invalid print must reach the median, which drops it.
    raw = round(value * MICRO) if math.isfinite(value) and value > 0 else -1
    return PriceQuote(BTC, raw, observed_ms, "test")


def _venue(root: Path, metrics: VenueMetrics) -> tuple[Venue, dict[str, FixedFeed]]:
    feeds = {name: FixedFeed() for name in FEEDS}
    median = MedianPriceFeed(feeds, (BTC,), CONFIG, metrics)
    # The breaker off: this test is about the median and the guard; a 20% crash in one tick
    # would halt the asset for the cool-off (tests/venue/test_venue_breaker.py).
    venue = Venue(VenueSettings((BTC,), root, circuit_breaker=None), median, metrics=metrics)
    for feed in feeds.values():
        feed.quote = _quote(50_000.0, T0)
    assert venue.tick(T0).prints == 1
    engine = venue.engine
    engine.deposit(engine.config.vault, usd("10000000"), ts=T0)
    engine.deposit("a", usd("6000"), ts=T0)
    engine.trade("a", BTC, qty("1"), ts=T0)
    engine.deposit("b", usd("1000"), ts=T0)
    return venue, feeds


broken = st.one_of(
    st.tuples(st.just("stale"), st.integers(1, 10_000_000)),
    st.tuples(st.just("invalid"), st.just(-1.0)),
    st.tuples(st.just("manipulated"), st.floats(1.0, 1e7)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    crash=st.floats(40_000.0, 46_000.0),
    noise=st.lists(st.floats(-0.004, 0.004), min_size=3, max_size=3),
    # Weighted towards honest feeds, so the unguarded branch (a crash liquidated) runs often.
    faults=st.lists(st.one_of(st.none(), st.none(), st.none(), broken), min_size=3, max_size=3),
    ages=st.lists(st.integers(0, 500_000), min_size=3, max_size=3),
)
def test_through_the_tick_a_guarded_asset_is_never_liquidated(
    crash: float,
    noise: list[float],
    faults: list[tuple[str, float] | None],
    ages: list[int],
) -> None:
    metrics = VenueMetrics()
    with tempfile.TemporaryDirectory() as tmp:
        venue, feeds = _venue(Path(tmp), metrics)
        honest = []
        for name, fault, eps, age in zip(FEEDS, faults, noise, ages, strict=True):
            value, observed = crash * (1 + eps), T1 - age
            if fault is None:
                honest.append(value)
            elif fault[0] == "stale":
                observed = T1 - CONFIG.default_max_age_ms - int(fault[1])
                observed = max(observed, T0)  # the feed's calm quote, never newer
                value = 50_000.0 if observed == T0 else value
            else:
                value = fault[1]
            feeds[name].quote = _quote(value, observed)
        try:
            outcome = venue.tick(T1)
            median = venue.feed.last[BTC]  # type: ignore[attr-defined]
            asset = venue.engine.state.assets[BTC]
            event("guarded" if median.guarded else f"{len(honest)} honest feeds")
            low, high = round(min(honest, default=0) * MICRO), round(max(honest, default=0) * MICRO)
            if len(honest) >= 2:
                # One broken feed of three cannot move the median beyond the honest range
                # (the feeds quote whole micro-USD).
                assert low - 1 <= median.price * MICRO <= high + 1
            if median.guarded:
                assert asset.guarded
            if asset.guarded:
                # By the median, or by the engine refusing too wide a band.
                assert outcome.liquidations == ()
                with pytest.raises(LiquidationCoreError):
                    venue.engine.trade("b", BTC, qty("0.01"), ts=T1)  # no new risk either
                return
            assert len(median.healthy) >= CONFIG.min_healthy
            if len(honest) >= 2:
                # One feed of three broken: the print lies within the honest range and the
                # crash is liquidated.
                assert low - 1 <= (asset.price or 0) <= high + 1
                assert [bucket for bucket, _ in outcome.liquidations][:1] == ["a"]
        finally:
            venue.close()


def test_a_deviating_feed_is_dropped_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = VenueMetrics()
    venue, feeds = _venue(tmp_path, metrics)
    try:
        feeds["binance-spot"].quote = _quote(49_900.0, T1 - 1_000)
        feeds["binance-usdm"].quote = _quote(49_950.0, T1 - 1_000)
        feeds["bybit-linear"].quote = _quote(80_000.0, T1 - 1_000)  # manipulated
        with caplog.at_level("WARNING", logger="dynamargin"):
            outcome = venue.tick(T1)
        assert outcome.prints == 1 and outcome.liquidations == ()
        asset = venue.engine.state.assets[BTC]
        assert not asset.guarded and asset.price == price("49950")
        # Only the healthy feeds reach the engine; the calm quote of the dropped one is old.
        fresh = {f for f, ref in asset.references.items() if ref.observed_ms == T1 - 1_000}
        assert fresh == {"binance-spot", "binance-usdm"}
        assert "feed bybit-linear dropped, deviating" in caplog.text
        text = metrics.render().decode()
        assert (
            'dynamargin_venue_oracle_feeds_dropped_total{asset="BTCUSDT",feed="bybit-linear",'
            'state="deviating"} 1.0' in text
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="dynamargin"):
            venue.tick(T1 + 10_000)  # still deviating: counted again, not logged again
        assert "dropped" not in caplog.text
        assert 'feed="bybit-linear",state="deviating"} 2.0' in metrics.render().decode()
    finally:
        venue.close()


def test_the_store_median_reads_spot_and_perp_series(world: World) -> None:
    feed = store_median_feed(world.store, ASSETS, config=MedianConfig(max_deviation=0.05))
    quotes = feed.quotes(world.end_ms)
    assert set(quotes) == set(ASSETS)
    spot = world.feed().quotes(world.end_ms)
    for asset, quote in quotes.items():
        names = {name for name, _, _ in quote.references}
        assert names <= {"binance-spot", "binance-usdm"}  # no second venue in this store
        assert "binance-spot" in names
        assert dict((n, p) for n, p, _ in quote.references)["binance-spot"] == spot[asset].price
        assert feed.last[asset].guarded == (len(names) < 2)


def test_a_published_median_is_served_once_evaluated_and_counts_its_drops() -> None:
    from features.oracle_price import FeedPrice, median_price
    from venue.median_feed import PublishedMedianFeed

    metrics = VenueMetrics()
    feed = PublishedMedianFeed(metrics)
    feeds = [FeedPrice(name, 50_000.0 + 10 * i, T1 - 1_000) for i, name in enumerate(FEEDS)]
    feeds[2] = FeedPrice("bybit-linear", 1.0, T1 - 1_000)
    feed.offer({BTC: median_price(BTC, feeds, T1, CONFIG)})
    assert feed.quotes(T1 - 1) == {}  # not evaluated yet at that time
    quote = feed.quotes(T1)[BTC]
    assert quote.price == price("50000") and quote.observed_ms == T1 - 1_000
    assert quote.confidence == price("5")  # the healthy feeds' half-range; median of all three
    assert [name for name, _, _ in quote.references] == ["binance-spot", "binance-usdm"]
    assert "bybit-linear" in metrics.render().decode()
