"""Liquidation price impact and the cascade it starts (issue #19 item 3)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.errors import ConfigError
from liquidation.impact import (
    ImpactConfig,
    bar_sigma,
    book_liquidator,
    decay,
    impact,
    resolve_cascade,
    shifted,
)
from liquidation.money import MICRO


def test_square_root_law_and_direction() -> None:
    cfg = ImpactConfig(coefficient=1.0)
    vol = np.array([1e8, 1e8])
    sigma = np.array([0.01, 0.01])
    one = impact(np.array([1e6, 0.0]), np.array([0.0, 1e6]), vol, sigma, cfg)
    four = impact(np.array([4e6, 0.0]), np.array([0.0, 4e6]), vol, sigma, cfg)
    # Longs sold push the price down, shorts bought back push it up.
    assert one[0] < 0 < one[1]
    assert one[0] == pytest.approx(-0.01 * np.sqrt(1e6 / 1e8))
    # Four times the notional, twice the impact.
    np.testing.assert_allclose(four, 2 * one)
    # Only the net flow moves the price.
    assert impact(np.array([5e6]), np.array([5e6]), vol[:1], sigma[:1], cfg)[0] == 0.0


def test_impact_is_capped_and_zero_volume_takes_the_cap() -> None:
    cfg = ImpactConfig(coefficient=1.0, max_impact=0.2)
    out = impact(np.array([1e12, 1.0]), np.array([0.0, 0.0]), np.array([1.0, 0.0]),
                 np.array([0.05, 0.05]), cfg)  # fmt: skip
    np.testing.assert_allclose(out, [-0.2, -0.2])


def test_bar_sigma_is_point_in_time() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(1, 200)), axis=1))
    sigma = bar_sigma(close, 24)
    changed = close.copy()
    changed[:, 150:] *= np.exp(rng.normal(0, 0.2, size=(1, 50)))
    again = bar_sigma(changed, 24)
    # A change from bar 150 on cannot move sigma known at the open of bar 150 or before.
    np.testing.assert_array_equal(sigma[:, :151], again[:, :151])
    assert not np.array_equal(sigma[:, 152:], again[:, 152:])
    # sigma at bar 100 is the root mean square of the returns of bars 76 .. 99.
    returns = np.diff(np.log(close[0, 75:100]))
    assert len(returns) == 24
    assert sigma[0, 100] == pytest.approx(np.sqrt(np.mean(returns**2)), rel=1e-9)


def _book(rng: np.random.Generator, n: int, n_assets: int = 2) -> tuple[np.ndarray, ...]:
    asset = rng.integers(0, n_assets, size=n)
    long_ = rng.random(n) < 0.7
    lev = rng.uniform(5, 60, size=n)
    # Liquidation level about 1/leverage away from 100.
    level = np.where(long_, 100 * (1 - 0.9 / lev), 100 * (1 + 0.9 / lev))
    level = np.round(level * MICRO).astype(np.int64)
    notional = rng.lognormal(np.log(2e4), 1.0, size=n)
    return asset, long_, level, notional


def _cascade(coef: float, seed: int = 0, n: int = 3_000, drop: float = 0.04):
    rng = np.random.default_rng(seed)
    asset, long_, level, notional = _book(rng, n)
    low = np.round(np.array([100 * (1 - drop), 100 * (1 - drop / 2)]) * MICRO).astype(np.int64)
    high = np.round(np.array([100.5, 100.2]) * MICRO).astype(np.int64)
    liq = book_liquidator(asset, long_, level, notional, low, high)
    cfg = ImpactConfig(coefficient=coef, max_rounds=50)
    res = resolve_cascade(liq, np.zeros(2), np.array([2e7, 2e7]), np.array([0.01, 0.01]), cfg)
    return res, liq, notional, long_, asset


def test_impact_off_is_the_exogenous_replay() -> None:
    res, liq, *_ = _cascade(0.0)
    longs, shorts = liq(np.zeros(2))
    np.testing.assert_array_equal(res.long_notional, longs)
    np.testing.assert_array_equal(res.short_notional, shorts)
    np.testing.assert_array_equal(res.offset, np.zeros(2))
    prices = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64) * MICRO
    np.testing.assert_array_equal(shifted(prices, np.zeros(2)), prices)


def test_liquidations_rise_with_the_impact_coefficient() -> None:
    totals = [(_cascade(c)[0].long_notional.sum()) for c in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b >= a for a, b in itertools.pairwise(totals))
    assert totals[-1] > totals[0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1_000), coef=st.floats(0.0, 20.0), drop=st.floats(0.0, 0.3))
def test_a_cascade_cannot_exceed_the_book(seed: int, coef: float, drop: float) -> None:
    res, _, notional, long_, asset = _cascade(coef, seed, n=500, drop=drop)
    for a in range(2):
        assert res.long_notional[a] <= notional[long_ & (asset == a)].sum() * (1 + 1e-12)
        assert res.short_notional[a] <= notional[~long_ & (asset == a)].sum() * (1 + 1e-12)
    assert np.all(np.abs(res.offset) <= ImpactConfig().max_impact + 1e-12)
    assert res.rounds <= 50


def test_one_sided_cascade_converges_to_a_fixed_point() -> None:
    res, liq, *_ = _cascade(2.0)
    assert res.converged
    cfg = ImpactConfig(coefficient=2.0)
    again = impact(res.long_notional, res.short_notional, np.array([2e7, 2e7]),
                   np.array([0.01, 0.01]), cfg)  # fmt: skip
    np.testing.assert_array_equal(again, res.offset)
    np.testing.assert_array_equal(liq(res.offset)[0], res.long_notional)


def test_round_cap_is_reported() -> None:
    rng = np.random.default_rng(0)
    asset, long_, level, notional = _book(rng, 3_000)
    liq = book_liquidator(asset, long_, level, notional,
                          np.array([96, 98]) * MICRO, np.array([100, 100]) * MICRO)  # fmt: skip
    args = (np.zeros(2), np.array([2e7, 2e7]), np.array([0.01, 0.01]))
    one = resolve_cascade(liq, *args, ImpactConfig(coefficient=3.0, max_rounds=1))
    full = resolve_cascade(liq, *args, ImpactConfig(coefficient=3.0, max_rounds=50))
    assert one.rounds == 1 and not one.converged
    assert full.converged and full.rounds > 1
    assert full.long_notional.sum() >= one.long_notional.sum()


def test_decay_returns_to_the_historical_path() -> None:
    cfg = ImpactConfig(half_life_bars=2.0)
    off = np.array([-0.1, 0.05])
    np.testing.assert_allclose(decay(off, cfg, 2), off / 2)
    assert np.all(np.abs(decay(off, cfg, 60)) < 1e-9)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="coefficient"):
        ImpactConfig(coefficient=-1.0)
    with pytest.raises(ConfigError, match="max_rounds"):
        ImpactConfig(max_rounds=0)


def test_decay_snaps_to_zero_below_the_floor() -> None:
    cfg = ImpactConfig(half_life_bars=1.0, floor=1e-6)
    off = np.array([-1.5e-6, 1e-3])
    out = decay(off, cfg)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(5e-4)
