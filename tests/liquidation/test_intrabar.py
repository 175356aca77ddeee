"""The intra-bar Brownian bridge path and fills at the crossing (issue #19 item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.errors import ConfigError
from liquidation.intrabar import (
    BridgeConfig,
    anchors_micro,
    bridge_prices,
    closeout_outcome,
    crossing_marks,
    crossing_price,
    first_crossing,
    liquidation_levels,
    path_ticks,
)
from liquidation.money import MICRO, QTY_SCALE
from liquidation.rules.fixed import value_v
from liquidation.simulate import tick_prices
from tests.liquidation.replay_builders import random_walk_market


def _bars(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    m = random_walk_market(seed, n_assets=2, n_bars=n)
    return m.open, m.high, m.low, m.close


def test_anchors_are_the_replays_wick_ticks() -> None:
    market = random_walk_market(3)
    np.testing.assert_array_equal(
        anchors_micro(market.open, market.high, market.low, market.close), tick_prices(market)
    )


@pytest.mark.parametrize("roughness", [0.0, 0.25, 2.0])
def test_bridge_passes_through_open_extremes_close_in_order(roughness: float) -> None:
    o, h, lo, c = _bars(1)
    cfg = BridgeConfig(n_steps=16, roughness=roughness)
    path = bridge_prices(o, h, lo, c, seed=9, config=cfg)
    anchors = anchors_micro(o, h, lo, c)
    assert path.shape == (*o.shape, 17)
    np.testing.assert_array_equal(path[..., 0], anchors[..., 0])
    np.testing.assert_array_equal(path[..., -1], anchors[..., 3])
    np.testing.assert_array_equal(path.max(axis=-1), anchors.max(axis=-1))
    np.testing.assert_array_equal(path.min(axis=-1), anchors.min(axis=-1))
    # The nearer extreme comes first: the low of a rising bar before its high.
    up = anchors[..., 3] >= anchors[..., 0]
    first_low = np.argmax(path == anchors.min(axis=-1)[..., None], axis=-1)
    first_high = np.argmax(path == anchors.max(axis=-1)[..., None], axis=-1)
    strict = anchors.min(axis=-1) < np.minimum(anchors[..., 0], anchors[..., 3])
    strict &= anchors.max(axis=-1) > np.maximum(anchors[..., 0], anchors[..., 3])
    assert np.all(first_low[up & strict] < first_high[up & strict])
    assert np.all(first_high[~up & strict] < first_low[~up & strict])


def test_bridge_is_seeded() -> None:
    o, h, lo, c = _bars(2)
    a = bridge_prices(o, h, lo, c, seed=1)
    np.testing.assert_array_equal(a, bridge_prices(o, h, lo, c, seed=1))
    assert not np.array_equal(a, bridge_prices(o, h, lo, c, seed=2))


def test_zero_range_bar_is_flat() -> None:
    flat = np.full((1, 5), 100.0)
    path = bridge_prices(flat, flat, flat, flat, seed=0)
    assert np.all(path == 100 * MICRO)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="n_steps"):
        BridgeConfig(n_steps=2)
    with pytest.raises(ConfigError, match="roughness"):
        BridgeConfig(roughness=-1.0)


def _positions(rng: np.random.Generator, n: int, entry: int) -> tuple[np.ndarray, ...]:
    side = np.where(rng.random(n) < 0.5, 1, -1)
    lots = side * rng.integers(10**6, 10**8, size=n)
    lev = rng.uniform(2, 50, size=n)
    cost = value_v(lots, np.full(n, entry))
    balance = (np.abs(cost) / lev).astype(np.int64)
    return balance, lots, cost


def test_equity_at_the_level_is_at_most_maintenance() -> None:
    rng = np.random.default_rng(0)
    entry = 100 * MICRO
    balance, lots, cost = _positions(rng, 2_000, entry)
    mmf = 0.03
    level = liquidation_levels(balance, lots, cost, mmf)
    eq = balance + value_v(lots, level) - cost
    mm = np.abs(value_v(lots, level)) * mmf
    # Rounded against the trader: never healthier at the level than maintenance (+ rounding).
    assert np.all(eq <= mm + 2)
    # And one micro-USD on the healthy side of the level the position is (just) above it.
    step = np.where(lots > 0, level + 1, level - 1)
    eq1 = balance + value_v(lots, step) - cost
    assert np.all(eq1 >= np.abs(value_v(lots, step)) * mmf - np.abs(lots) / QTY_SCALE - 2)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), roughness=st.floats(0.0, 1.0))
def test_continuous_crossing_fills_at_the_level_and_never_makes_bad_debt(
    seed: int, roughness: float
) -> None:
    """Without slippage, a crossing inside the bar fills at the level, above bankruptcy."""
    rng = np.random.default_rng(seed)
    o, h, lo, c = _bars(seed % 50, n=40)
    path = bridge_prices(o, h, lo, c, seed=seed, config=BridgeConfig(8, roughness))
    n = 500
    entry = path[0, 0, 0]
    balance, lots, cost = _positions(rng, n, int(entry))
    level = liquidation_levels(balance, lots, cost, 0.02)
    bar = rng.integers(0, path.shape[1], size=n)
    rows = path[0, bar]
    idx, mark = crossing_marks(rows, level, lots > 0)
    inside = idx >= 1
    np.testing.assert_array_equal(mark[inside], level[inside])
    _, equity, bad = closeout_outcome(
        balance[inside], lots[inside], cost[inside], mark[inside], 0.0
    )
    assert np.all(bad == 0)
    # The equity at the fill is what maintenance left (at most 2% of the notional).
    assert np.all(equity <= np.abs(value_v(lots[inside], mark[inside])) * 0.02 + 2)


def test_only_a_gap_through_bankruptcy_makes_bad_debt() -> None:
    # A 10x long from 100: bankruptcy 90, liquidation level (5% maintenance) about 94.7.
    lots = np.array([10 * QTY_SCALE])
    cost = value_v(lots, np.array([100 * MICRO]))
    balance = np.array([100 * MICRO])
    level = liquidation_levels(balance, lots, cost, 0.05)
    bankrupt = liquidation_levels(balance, lots, cost, 0.0)
    assert bankrupt[0] == 90 * MICRO
    # A bar that trades down through 80 after opening at 99: fill at the level, no bad debt.
    smooth = np.array([[99, 95, 80, 85]]) * MICRO
    idx, mark = crossing_marks(smooth, level, lots > 0)
    assert idx[0] == 2 and mark[0] == level[0]
    assert closeout_outcome(balance, lots, cost, mark, 0.0)[2][0] == 0
    # A bar that opens at 85, below bankruptcy: a gap, filled at the open, with bad debt.
    gap = np.array([[85, 84, 88, 86]]) * MICRO
    idx, mark = crossing_marks(gap, level, lots > 0)
    assert idx[0] == 0 and mark[0] == 85 * MICRO
    assert closeout_outcome(balance, lots, cost, mark, 0.0)[2][0] == 50 * MICRO
    # A gap that stays above bankruptcy is a loss to the trader only.
    mild = np.array([[93, 92, 95, 94]]) * MICRO
    _, mark = crossing_marks(mild, level, lots > 0)
    assert closeout_outcome(balance, lots, cost, mark, 0.0)[2][0] == 0


def test_slippage_is_paid_against_the_trader() -> None:
    lots = np.array([QTY_SCALE, -QTY_SCALE])
    mark = np.array([100 * MICRO, 100 * MICRO])
    cost = value_v(lots, mark)
    balance = np.array([20 * MICRO, 20 * MICRO])
    exec_price, equity, _ = closeout_outcome(balance, lots, cost, mark, 0.01)
    np.testing.assert_array_equal(exec_price, [99 * MICRO, 101 * MICRO])
    np.testing.assert_array_equal(equity, [19 * MICRO, 19 * MICRO])


def test_first_crossing_none() -> None:
    path = np.array([[100, 101, 99, 100]]) * MICRO
    assert first_crossing(path, np.array([50 * MICRO]), np.array([True]))[0] == -1
    assert first_crossing(path, np.array([101 * MICRO]), np.array([False]))[0] == 1


def test_path_ticks_dispatch() -> None:
    o, h, lo, c = _bars(4, n=20)
    np.testing.assert_array_equal(path_ticks(o, h, lo, c, "wick"), anchors_micro(o, h, lo, c))
    bridge = path_ticks(o, h, lo, c, "bridge", seed=3, config=BridgeConfig(n_steps=8))
    assert bridge.shape == (*o.shape, 9)
    with pytest.raises(ConfigError, match="unknown intra-bar path"):
        path_ticks(o, h, lo, c, "teleport")


@settings(max_examples=60, deadline=None)
@given(
    level=st.integers(1, 10**9),
    before=st.integers(1, 10**9),
    after=st.integers(1, 10**9),
)
def test_crossing_price_is_the_first_liquidatable_price(
    level: int, before: int, after: int
) -> None:
    falling = after < before

    def hit(p: int) -> bool:
        return p <= level if falling else p >= level

    if not hit(after):
        with pytest.raises(ValueError, match="not liquidatable"):
            crossing_price(hit, before, after)
        return
    got = crossing_price(hit, before, after)
    if hit(before):
        assert got == before
    else:
        assert got == level  # the first price of the segment at the level
