"""Kline order-flow and liquidity features: planted truths, hand values and bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features import orderflow as flow
from features.volatility import min_valid_count


def test_kyle_lambda_recovers_a_planted_impact_coefficient() -> None:
    rng = np.random.default_rng(7)
    n, window, impact = 5_000, 168, 2.5e-3  # return per million of signed volume
    signed = rng.normal(0.0, 4.0, n)  # millions of quote currency
    ret = impact * signed + rng.normal(0.0, 0.004, n)
    ret[rng.random(n) < 0.03] = np.nan  # missing bars only thin the windows
    estimate = flow.kyle_lambda(ret, signed, window, min_valid_count(window, 0.8))
    assert np.nanmedian(estimate) == pytest.approx(impact, rel=0.03)
    assert np.isnan(estimate[: window // 2]).all()


def test_kyle_lambda_equals_a_per_window_least_squares_fit() -> None:
    rng = np.random.default_rng(8)
    signed = rng.normal(0.0, 1.0, 300)
    ret = 0.01 * signed + rng.normal(0.0, 0.01, 300)
    ret[[50, 51, 200]] = np.nan
    window = 40
    fast = flow.kyle_lambda(ret, signed, window, 32)
    for end in (45, 120, 210, 299):
        y, x = ret[end - window + 1 : end + 1], signed[end - window + 1 : end + 1]
        ok = ~np.isnan(y)
        slope = np.polyfit(x[ok], y[ok], 1)[0]
        assert fast[end] == pytest.approx(slope, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    ret=arrays(np.float64, 120, elements=st.one_of(st.just(np.nan), st.floats(-0.3, 0.3))),
    volume=arrays(np.float64, 120, elements=st.one_of(st.just(np.nan), st.floats(0.0, 1e9))),
)
def test_vpin_always_lies_in_the_unit_interval(ret: np.ndarray, volume: np.ndarray) -> None:
    out = flow.vpin_bvc(ret, volume, window=12, sigma_window=24, min_valid=1, min_valid_sigma=2)
    finite = out[~np.isnan(out)]
    assert ((finite >= 0.0) & (finite <= 1.0)).all()


def test_vpin_is_high_when_flow_is_one_sided_and_low_when_balanced() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 0.01, 400)
    volume = np.full(400, 100.0)
    calm = flow.vpin_bvc(noise * 1e-3, volume, 24, 168, 20, 135)  # tiny moves vs sigma
    calm[:300] = np.nan
    trending = noise.copy()
    trending[300:] = 0.05  # five-sigma up moves on every bar
    surge = flow.vpin_bvc(trending, volume, 24, 168, 20, 135)
    assert np.nanmax(surge[330:]) > 0.9
    assert np.nanmean(flow.vpin_bvc(noise, volume, 24, 168, 20, 135)) < 0.75


def test_taker_imbalance_signed_volume_and_cvd_by_hand() -> None:
    volume = np.array([10.0, 10.0, 0.0, 20.0, np.nan])
    buy = np.array([10.0, 5.0, 0.0, 5.0, np.nan])
    np.testing.assert_allclose(
        flow.taker_imbalance(volume, buy), [1.0, 0.0, np.nan, -0.5, np.nan], equal_nan=True
    )
    quote, buy_quote = volume * 2.0, buy * 2.0
    signed = flow.signed_volume(quote, buy_quote)
    np.testing.assert_allclose(signed, [20.0, 0.0, 0.0, -20.0, np.nan], equal_nan=True)
    cvd = flow.cumulative_volume_delta(signed, window=3, min_valid=2)
    # Windows with two of three bars (the series start, a missing bar) are rescaled to three.
    np.testing.assert_allclose(cvd, [np.nan, 30.0, 20.0, -20.0, -30.0], equal_nan=True)
    window_imb = flow.window_taker_imbalance(volume, buy, window=2, min_valid=1)
    np.testing.assert_allclose(window_imb, [1.0, 0.5, 0.0, -0.5, -0.5], equal_nan=True)


def test_trade_surprise_compares_with_the_previous_window_only() -> None:
    trades = np.array([99.0] * 10 + [999.0])
    out = flow.trade_surprise(trades, window=5, min_valid=4)
    assert out[-1] == pytest.approx(math.log(1000.0 / 100.0))
    assert out[8] == pytest.approx(0.0)
    assert np.isnan(out[:4]).all()


def test_average_trade_size_and_amihud_by_hand() -> None:
    quote = np.array([1e6, 3e6, 0.0, np.nan])
    trades = np.array([10.0, 30.0, 0.0, 5.0])
    size = flow.average_trade_size(quote, trades, window=2, min_valid=1)
    np.testing.assert_allclose(size, [1e5, 1e5, 1e5, np.nan], equal_nan=True)
    ret = np.array([0.01, -0.03, 0.02, 0.01])
    amihud = flow.amihud_illiquidity(ret, quote, window=2, min_valid=1)
    # A zero-volume bar is missing, not an infinite illiquidity.
    np.testing.assert_allclose(amihud, [0.01, 0.01, 0.01, np.nan], equal_nan=True)


def bounce_path(n: int, spread: float, sigma: float, seed: int) -> tuple[np.ndarray, ...]:
    """Closes, highs and lows of an efficient price seen through a bid-ask spread."""
    rng = np.random.default_rng(seed)
    steps = 50
    mid = np.cumsum(rng.normal(0.0, sigma / math.sqrt(steps), (n, steps)).ravel()).reshape(n, steps)
    side = rng.choice([-1.0, 1.0], (n, steps))
    trade = mid + side * spread / 2.0  # log prices of trades at bid or ask
    return trade[:, -1], trade.max(axis=1), trade.min(axis=1)


def test_roll_spread_recovers_a_planted_bid_ask_bounce() -> None:
    spread = 0.002
    close, _, _ = bounce_path(6_000, spread, sigma=0.001, seed=4)
    ret = np.diff(close, prepend=np.nan)
    estimate = flow.roll_spread(ret, window=168, min_valid=135)
    assert np.nanmedian(estimate) == pytest.approx(spread, rel=0.15)
    no_bounce, _, _ = bounce_path(6_000, 0.0, sigma=0.001, seed=4)
    assert np.nanmedian(flow.roll_spread(np.diff(no_bounce, prepend=np.nan), 168, 135)) < spread / 3


def test_corwin_schultz_grows_with_the_spread_and_is_non_negative() -> None:
    spread = 0.004
    _, high, low = bounce_path(3_000, spread, sigma=0.002, seed=5)
    wide = flow.corwin_schultz_spread(np.exp(high), np.exp(low), window=24, min_valid=20)
    _, high0, low0 = bounce_path(3_000, 0.0, sigma=0.002, seed=5)
    tight = flow.corwin_schultz_spread(np.exp(high0), np.exp(low0), window=24, min_valid=20)
    assert (wide[~np.isnan(wide)] >= 0).all()
    assert np.nanmean(wide) == pytest.approx(spread, rel=0.5)
    assert np.nanmean(tight) < 0.5 * np.nanmean(wide)
