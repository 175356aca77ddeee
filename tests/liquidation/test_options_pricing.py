"""Black-76: put-call parity and analytic Greeks against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.errors import ConfigError
from liquidation.options import black76
from liquidation.options.surface import VolSurface, from_forecast

forwards = st.floats(min_value=1.0, max_value=200_000.0)
moneyness = st.floats(min_value=0.2, max_value=5.0)  # strike / forward
years = st.floats(min_value=1.0 / 365 / 24, max_value=3.0)
vols = st.floats(min_value=0.05, max_value=3.0)
rates = st.floats(min_value=0.0, max_value=0.1)


@settings(max_examples=300, deadline=None)
@given(forwards, moneyness, years, vols, rates)
def test_put_call_parity(forward, m, t, vol, r):
    strike = forward * m
    call = black76.price(forward, strike, t, vol, True, r)
    put = black76.price(forward, strike, t, vol, False, r)
    parity = np.exp(-r * t) * (forward - strike)
    assert call - put == pytest.approx(parity, abs=1e-9 * max(forward, strike))
    # No-arbitrage bounds of a call: intrinsic <= C <= discounted forward.
    assert call >= np.exp(-r * t) * max(forward - strike, 0.0) - 1e-9 * forward
    assert call <= np.exp(-r * t) * forward + 1e-9 * forward


@settings(max_examples=300, deadline=None)
@given(forwards, moneyness, years, vols, rates, st.booleans())
def test_greeks_match_finite_differences(forward, m, t, vol, r, is_call):
    strike = forward * m
    g = black76.greeks(forward, strike, t, vol, is_call, r)

    def px(f=forward, tt=t, s=vol):
        return float(black76.price(f, strike, tt, s, is_call, r))

    # Steps relative to the distribution's width F*vol*sqrt(T), so short, low-vol options
    # (a kink one width wide) are differenced as finely as long ones.
    h_f = 1e-3 * forward * min(1.0, vol * t**0.5)
    delta_fd = (px(f=forward + h_f) - px(f=forward - h_f)) / (2 * h_f)
    gamma_fd = (px(f=forward + h_f) - 2 * px() + px(f=forward - h_f)) / h_f**2
    h_s = 1e-4 * vol
    vega_fd = (px(s=vol + h_s) - px(s=vol - h_s)) / (2 * h_s)
    h_t = 1e-4 * t
    theta_fd = -(px(tt=t + h_t) - px(tt=t - h_t)) / (2 * h_t)

    scale = forward  # errors are relative to the size of the contract
    assert float(g.delta) == pytest.approx(delta_fd, abs=1e-6)
    # Second differences lose digits; bound the error by the price's rounding over h^2.
    assert float(g.gamma) * forward == pytest.approx(
        gamma_fd * forward,
        abs=1e-4
        + 1e-3 * abs(float(g.gamma)) * forward
        + 1e-14 * max(forward, strike) * forward / h_f**2,
    )
    assert float(g.vega) == pytest.approx(vega_fd, rel=1e-5, abs=1e-8 * scale)
    assert float(g.theta) == pytest.approx(theta_fd, rel=1e-4, abs=1e-8 * scale / t)


def test_expired_option_is_worth_its_intrinsic_value():
    g = black76.greeks([100.0, 100.0], [90.0, 110.0], [0.0, 0.0], [0.5, 0.5], [True, False])
    assert g.price.tolist() == [10.0, 10.0]
    assert g.delta.tolist() == [1.0, -1.0]
    assert g.gamma.tolist() == g.vega.tolist() == g.theta.tolist() == [0.0, 0.0]


def test_price_is_vectorised_and_monotone_in_vol():
    vol_grid = np.linspace(0.1, 2.0, 20)
    prices = black76.price(100.0, 120.0, 0.5, vol_grid, True)
    assert prices.shape == (20,)
    assert (np.diff(prices) > 0).all()


def test_surface_smile_and_fallback():
    surface = VolSurface(atm_vol=0.6, skew=-0.1, curvature=0.05)
    low, atm, high = surface.vol(100.0, [70.0, 100.0, 140.0], 0.25)
    assert atm == pytest.approx(0.6)
    assert low > atm and high > 0.05  # negative skew: puts richer
    # A 24h sigma of 3% is 3% * sqrt(365) = 57.3% a year.
    assert from_forecast(0.03, 24.0).atm_vol == pytest.approx(0.03 * np.sqrt(365.0))
    with pytest.raises(ConfigError):
        VolSurface(atm_vol=0.01)
