"""The multi-source oracle median: robustness to one manipulated feed, staleness, guarding."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.oracle_price import FeedPrice, MedianConfig, median_price

NOW = 1_655_100_000_000
HOUR = 3_600_000

honest_price = st.floats(min_value=1e-4, max_value=1e7, allow_nan=False, allow_infinity=False)
any_price = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
    st.just(0.0),
)
age_ms = st.integers(min_value=0, max_value=HOUR)


@settings(max_examples=400, deadline=None)
@given(
    h1=honest_price,
    h2=honest_price,
    bad=any_price,
    ages=st.tuples(age_ms, age_ms, age_ms),
    position=st.integers(0, 2),
    max_deviation=st.floats(min_value=1e-4, max_value=0.5),
)
def test_one_manipulated_feed_of_three_cannot_move_the_median_outside_the_honest_range(
    h1: float,
    h2: float,
    bad: float,
    ages: tuple[int, int, int],
    position: int,
    max_deviation: float,
) -> None:
    prices = [h1, h2]
    prices.insert(position, bad)
    pairs = enumerate(zip(prices, ages, strict=True))
    feeds = [FeedPrice(f"feed{i}", p, NOW - a) for i, (p, a) in pairs]
    result = median_price("BTCUSDT", feeds, NOW, MedianConfig(max_deviation=max_deviation))
    low, high = min(h1, h2), max(h1, h2)
    assert low <= result.price <= high
    assert result.verdicts[position].state in {"healthy", "deviating", "invalid"}
    if not result.guarded:
        # Every unguarded price is backed by enough feeds within the deviation band.
        assert len(result.healthy) >= 2
        for verdict in result.healthy:
            assert abs(verdict.price - result.price) <= max_deviation * result.price * (1 + 1e-12)


@settings(max_examples=300, deadline=None)
@given(
    prices=st.lists(honest_price, min_size=0, max_size=6),
    stale_mask=st.lists(st.booleans(), min_size=6, max_size=6),
    min_healthy=st.integers(1, 4),
)
def test_too_few_healthy_feeds_guard_the_asset(
    prices: list[float], stale_mask: list[bool], min_healthy: int
) -> None:
    config = MedianConfig(max_age_ms=HOUR, max_deviation=0.02, min_healthy=min_healthy)
    feeds = [
        FeedPrice(f"f{i}", p, NOW - (2 * HOUR if stale_mask[i] else 0))
        for i, p in enumerate(prices)
    ]
    result = median_price("ETHUSDT", feeds, NOW, config)
    healthy = [v for v in result.verdicts if v.state == "healthy"]
    assert result.guarded == (len(healthy) < min_healthy)
    if result.guarded:
        assert "healthy feed(s)" in result.reason and "needed" in result.reason
    # A stale feed never counts, whatever its price.
    for verdict, stale in zip(result.verdicts, stale_mask[: len(prices)], strict=True):
        if stale:
            assert verdict.state == "stale"


@settings(max_examples=200, deadline=None)
@given(prices=st.lists(honest_price, min_size=1, max_size=5), shift=st.floats(1e-3, 1e3))
def test_a_stale_feed_never_moves_the_price(prices: list[float], shift: float) -> None:
    fresh = [FeedPrice(f"f{i}", p, NOW) for i, p in enumerate(prices)]
    alone = median_price("X", fresh, NOW)
    stale = FeedPrice("old", prices[0] * shift, NOW - 3 * HOUR)
    with_stale = median_price("X", [*fresh, stale], NOW)
    assert with_stale.price == alone.price
    assert with_stale.verdicts[-1].state == "stale"


def test_a_deviating_feed_is_dropped_with_its_distance() -> None:
    feeds = [
        FeedPrice("binance-spot", 100.0, NOW - HOUR // 2),
        FeedPrice("binance-usdm", 100.5, NOW - HOUR // 2),
        FeedPrice("bybit-linear", 130.0, NOW - HOUR // 2),
    ]
    result = median_price("BTCUSDT", feeds, NOW)
    assert result.price == 100.5 and not result.guarded
    dropped = result.dropped
    assert [v.feed for v in dropped] == ["bybit-linear"]
    assert dropped[0].state == "deviating" and "from the median" in dropped[0].detail
    assert result.reference_feeds() == (
        ("binance-spot", 100.0, NOW - HOUR // 2),
        ("binance-usdm", 100.5, NOW - HOUR // 2),
    )


def test_per_feed_maximum_age_and_future_times() -> None:
    config = MedianConfig(max_age_ms={"slow": 3 * HOUR}, default_max_age_ms=HOUR)
    feeds = [
        FeedPrice("slow", 100.0, NOW - 2 * HOUR),  # within its own 3 h
        FeedPrice("fast", 100.0, NOW - 2 * HOUR),  # older than the default 1 h
        FeedPrice("ahead", 100.0, NOW + 60_000),  # a minute in the future: not trusted
    ]
    states = [v.state for v in median_price("BTCUSDT", feeds, NOW, config).verdicts]
    assert states == ["healthy", "stale", "invalid"]


def test_no_fresh_feed_gives_nan_and_guarded() -> None:
    result = median_price("BTCUSDT", [FeedPrice("a", float("nan"), NOW)], NOW)
    assert math.isnan(result.price) and result.guarded
    assert result.to_dict()["price"] is None


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="feed names must be unique"):
        median_price("BTCUSDT", [FeedPrice("a", 1.0, NOW), FeedPrice("a", 1.0, NOW)], NOW)
    with pytest.raises(ValueError, match="max_deviation"):
        MedianConfig(max_deviation=0.0)
    with pytest.raises(ValueError, match="min_healthy"):
        MedianConfig(min_healthy=0)
