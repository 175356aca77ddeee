"""The oracle median in the real liquidation engine: a guarded asset is never liquidated.

A trader is long 1 BTC at 50,000 with 3,000 of collateral (maintenance 1,500), so any print
below about 48,500 makes the account liquidatable. Three feeds then report a crash; some of
them are stale, broken or manipulated. Whatever they say, when too few feeds are healthy the
asset is guarded in the engine, nothing is liquidated and no new risk opens; when enough
are healthy, the engine's price stays within the honest feeds' range and the crash is
liquidated as it should be.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.oracle_price import FeedPrice, MedianConfig, median_price
from liquidation.engine import Engine
from liquidation.errors import LiquidationCoreError
from liquidation.money import price, qty, usd
from tests.liquidation.liq_builders import fund_vault, simple_config, snapshot
from venue.median_feed import feed_engine
from venue.price_feed import micro_price

BTC = "BTCUSDT"
T = 600_000
"""Engine time of the crash update (ms)."""
CONFIG = MedianConfig(max_age_ms=60_000, max_deviation=0.02, min_healthy=2)


def _engine() -> Engine:
    engine = Engine(simple_config())
    engine.update_price(BTC, price("50000"), ts=0)
    engine.apply_snapshot(snapshot(BTC, 1, 1.0), ts=0)
    fund_vault(engine)
    engine.deposit("a", usd("3000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    engine.deposit("b", usd("1000"), ts=0)
    return engine


broken = st.one_of(
    st.tuples(st.just("stale"), st.floats(1e3, 1e6)),
    st.tuples(st.just("invalid"), st.sampled_from([math.nan, -1.0, 0.0, math.inf])),
    st.tuples(st.just("manipulated"), st.floats(1.0, 1e7)),
)


@settings(max_examples=100, deadline=None)
@given(
    crash=st.floats(40_000.0, 48_000.0),
    noise=st.lists(st.floats(-0.004, 0.004), min_size=3, max_size=3),
    faults=st.lists(st.one_of(st.none(), broken), min_size=3, max_size=3),
    ages=st.lists(st.integers(0, 50_000), min_size=3, max_size=3),
)
def test_a_guarded_asset_is_never_liquidated_and_an_unguarded_price_stays_honest(
    crash: float,
    noise: list[float],
    faults: list[tuple[str, float] | None],
    ages: list[int],
) -> None:
    feeds, honest = [], []
    for i, (fault, eps, age) in enumerate(zip(faults, noise, ages, strict=True)):
        value, observed = crash * (1 + eps), T - age
        if fault is None:
            honest.append(value)
        elif fault[0] == "stale":
            observed = T - CONFIG.default_max_age_ms - int(fault[1])
        else:
            value = fault[1]
        feeds.append(FeedPrice(f"feed{i}", value, observed))
    median = median_price(BTC, feeds, T, CONFIG)
    engine = _engine()
    result = feed_engine(engine, {BTC: median}, ts_ms=T)[BTC]
    reports = engine.run_liquidations(keeper="k", ts=T, exhaustive=True)
    if len(honest) >= 2:
        # One broken feed of three cannot move the median beyond the honest range.
        assert min(honest) * (1 - 1e-12) <= median.price <= max(honest) * (1 + 1e-12)
    if median.guarded:
        assert engine.state.assets[BTC].guarded
    if engine.state.assets[BTC].guarded:
        # Guarded by the median, or by the engine refusing a band wider than it accepts (a
        # feed healthy at the edge of the deviation band widens the healthy half-range).
        assert result.verdict is not None and not result.verdict.accepted
        assert reports == []
        with pytest.raises(LiquidationCoreError):
            engine.trade("b", BTC, qty("0.01"), ts=T)  # no new risk either
        return
    # Unguarded: at least two healthy feeds agree; with at most one feed of three broken the
    # print lies within the honest range and the crash is liquidated. (Two colluding feeds
    # that agree are indistinguishable from two honest ones: the limit of any median.)
    assert len(median.healthy) >= CONFIG.min_healthy
    assert result.verdict is not None and result.verdict.accepted
    if len(honest) >= 2:
        low, high = micro_price(min(honest), "low"), micro_price(max(honest), "high")
        assert low - 1 <= (result.printed or 0) <= high + 1
        assert [r.bucket for r in reports] == ["a"]


def test_the_engine_sees_only_the_healthy_feeds_as_references() -> None:
    engine = _engine()
    feeds = [
        FeedPrice("binance-spot", 47_000.0, T - 5_000),
        FeedPrice("binance-usdm", 47_020.0, T - 5_000),
        FeedPrice("bybit-linear", 80_000.0, T - 5_000),  # manipulated
    ]
    median = median_price(BTC, feeds, T, CONFIG)
    assert [v.feed for v in median.dropped] == ["bybit-linear"]
    result = feed_engine(engine, {BTC: median}, ts_ms=T)[BTC]
    assert result.references == 2
    references = engine.state.assets[BTC].references
    assert set(references) == {"binance-spot", "binance-usdm"}
    assert not engine.state.assets[BTC].guarded
    # The median of all three (not re-taken over the healthy two): inside the honest range.
    assert result.printed == micro_price(47_020.0, "honest")


def test_too_few_healthy_feeds_guard_the_asset_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = _engine()
    feeds = [
        FeedPrice("binance-spot", 45_000.0, T - 5_000),
        FeedPrice("binance-usdm", 45_000.0, T - 3_600_000),  # stale
        FeedPrice("bybit-linear", math.nan, T - 5_000),  # invalid
    ]
    median = median_price(BTC, feeds, T, CONFIG)
    with caplog.at_level("WARNING", logger="dynamargin"):
        result = feed_engine(engine, {BTC: median}, ts_ms=T)[BTC]
    assert result.guarded_by_median and median.guarded
    assert engine.state.assets[BTC].guard_reason == "confidence"
    assert "oracle BTCUSDT guarded for the engine" in caplog.text
    assert engine.run_liquidations(keeper="k", ts=T, exhaustive=True) == []
