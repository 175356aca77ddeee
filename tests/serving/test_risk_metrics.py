"""VaR/ES from the calibrated forecast, the Forecast contract check, and liquidity metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ForecastContractError
from contracts.forecast import validate_forecasts
from serving.errors import LiquidityDataError
from serving.risk_metrics import liquidity_metrics, tail_metrics, tail_multipliers
from tests.serving.conftest import make_forecasts


def test_tail_multipliers_match_known_values():
    q, e = tail_multipliers(0.99, "normal")
    assert (q, e) == (pytest.approx(2.326348, abs=1e-6), pytest.approx(2.665214, abs=1e-6))
    qt, et = tail_multipliers(0.99, "t", dof=5)
    # Unit-variance Student-t(5): a thinner centre and a fatter tail than the normal.
    assert qt == pytest.approx(2.606464, abs=1e-6) and et == pytest.approx(3.448837, abs=1e-6)
    with pytest.raises(ValueError):
        tail_multipliers(0.99, "t", dof=2)


@settings(max_examples=100, deadline=None)
@given(
    sigma=st.floats(1e-3, 0.5),
    lo=st.floats(0.3, 1.0),
    hi=st.floats(1.0, 3.0),
    model_var=st.one_of(st.none(), st.just(float("nan")), st.floats(1e-3, 1.0)),
)
def test_tail_metrics_are_coherent_and_bracketed(sigma, lo, hi, model_var):
    m = tail_metrics(sigma, sigma * lo, sigma * hi, model_var, None)
    assert m.var_lower <= m.var <= m.var_upper
    assert m.es_lower <= m.es <= m.es_upper
    assert m.es >= m.var > 0
    if model_var is not None and np.isfinite(model_var):
        assert m.var == model_var
    else:
        assert m.var == pytest.approx(2.326348 * sigma, rel=1e-6)


def test_validate_forecasts_names_the_problem():
    frame = make_forecasts(hours=5)
    assert (
        list(validate_forecasts(frame.sample(frac=1, random_state=1))["asset"])[:5]
        == ["BTCUSDT"] * 5
    )
    with pytest.raises(ForecastContractError, match="es_99"):
        validate_forecasts(frame.drop(columns="es_99"))
    with pytest.raises(ForecastContractError, match="tz-aware"):
        validate_forecasts(frame.assign(ts=frame["ts"].dt.tz_localize(None)))
    with pytest.raises(ForecastContractError, match="duplicated forecast for BTCUSDT"):
        validate_forecasts(pd.concat([frame, frame.iloc[:1]]))
    broken = frame.copy()
    broken.loc[3, "sigma_upper"] = broken.loc[3, "sigma"] / 2
    with pytest.raises(ForecastContractError, match="do not bracket"):
        validate_forecasts(broken)
    with_nan = frame.copy()
    with_nan.loc[2, "sigma"] = np.nan  # kept: the policy turns it into a fallback
    assert validate_forecasts(with_nan)["sigma"].isna().sum() == 1


def roll_bars(spread: float, hours: int = 24 * 30, seed: int = 3) -> pd.DataFrame:
    """Hourly bars of a random walk traded through a bid-ask bounce of ``spread``."""
    rng = np.random.default_rng(seed)
    ticks_per_bar = 60
    efficient = np.cumsum(rng.normal(0, 0.0008, hours * ticks_per_bar)) + np.log(60_000)
    side = rng.choice([-1.0, 1.0], size=efficient.size)
    traded = np.exp(efficient + side * spread / 2).reshape(hours, ticks_per_bar)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-01", periods=hours, freq="h", tz="UTC"),
            "asset": "BTCUSDT",
            "open": traded[:, 0],
            "high": traded.max(1),
            "low": traded.min(1),
            "close": traded[:, -1],
            "quote_volume": rng.uniform(5e7, 1e8, hours),
        }
    )


def test_spread_estimate_recovers_a_known_bid_ask_bounce():
    wide = liquidity_metrics(roll_bars(spread=0.002)).loc["BTCUSDT"]
    narrow = liquidity_metrics(roll_bars(spread=0.0005)).loc["BTCUSDT"]
    assert wide["spread_bps"] == pytest.approx(20.0, rel=0.35)
    assert narrow["spread_bps"] < wide["spread_bps"]
    assert wide["slippage_bps"] > wide["spread_bps"] / 2


def test_amihud_and_slippage_scale_with_volume_and_size():
    bars = roll_bars(spread=0.001)
    base = liquidity_metrics(bars).loc["BTCUSDT"]
    deeper = liquidity_metrics(bars.assign(quote_volume=bars["quote_volume"] * 4)).loc["BTCUSDT"]
    assert deeper["amihud"] == pytest.approx(base["amihud"] / 4)
    big = liquidity_metrics(bars, standard_size_usd=4e6).loc["BTCUSDT"]
    half_spread = base["spread_bps"] / 2
    # Square-root law: 4x the size doubles the impact part.
    assert big["slippage_bps"] - half_spread == pytest.approx(
        2 * (base["slippage_bps"] - half_spread)
    )


def test_liquidity_is_point_in_time_and_needs_enough_bars():
    bars = roll_bars(spread=0.001)
    cut = bars["ts"].iloc[400]
    before = liquidity_metrics(bars, as_of=cut)
    shocked = bars.copy()
    shocked.loc[401:, "quote_volume"] = 1.0  # later bars must not leak into `as_of`
    pd.testing.assert_frame_equal(before, liquidity_metrics(shocked, as_of=cut))
    with pytest.raises(LiquidityDataError, match="BTCUSDT: only 10 bars"):
        liquidity_metrics(bars.iloc[:10])
    with pytest.raises(LiquidityDataError, match="quote_volume"):
        liquidity_metrics(bars.drop(columns="quote_volume"))


@pytest.mark.shared_data
def test_liquidity_on_real_btc_bars_is_plausible(shared_data):
    from features.sources.binance import read_klines

    path = shared_data / "binance/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-06.zip"
    bars = read_klines(path).frame
    metrics = liquidity_metrics(bars).loc["BTCUSDT"]
    # BTCUSDT spot is among the deepest books: a few bps at most for a $1m order.
    # Hourly close-high-low cannot resolve a sub-bp spread: 0 is a legitimate estimate.
    assert 0 <= metrics["spread_bps"] < 15
    assert 0.5 < metrics["slippage_bps"] < 50
    assert 1e-13 < metrics["amihud"] < 1e-9
