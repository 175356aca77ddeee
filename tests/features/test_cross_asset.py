"""Cross-asset, funding, basis and calendar features: as-of joins, planted betas, hand values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features import cross_asset as xa
from features.build import FeatureConfig, build_features
from features.errors import FeatureInputError
from features.market import MarketData

H = pd.Timedelta("1h")
T0 = pd.Timestamp("2024-05-01", tz="UTC")


def test_funding_is_known_from_its_own_time_and_never_earlier() -> None:
    closes = pd.DatetimeIndex([T0 + k * H for k in range(1, 11)])  # closes of bars 0..9
    events = pd.DatetimeIndex([T0 + 2 * H, T0 + 5 * H + pd.Timedelta("1ms")])
    level, change = xa.funding_asof(closes, events, np.array([1e-4, 3e-4]), pd.Timedelta("3h"))
    # Bar 1 closes at T0+2h, exactly the first event: known. Bar 0 (close T0+1h) is not.
    # The second event lands 1 ms after bar 4's close, so bar 5 is the first to see it.
    # Ages: bar 4 sees a 3 h old event (fresh at max_age 3 h); bar 8 one 4 h - 1 ms old (stale).
    expected_level = [np.nan, 1e-4, 1e-4, 1e-4, 1e-4, 3e-4, 3e-4, 3e-4, np.nan, np.nan]
    np.testing.assert_allclose(level, expected_level, equal_nan=True)
    expected_change = [np.nan] * 5 + [2e-4] * 3 + [np.nan] * 2
    np.testing.assert_allclose(change, expected_change, equal_nan=True)


def test_contradictory_funding_events_raise_naming_the_asset_and_time() -> None:
    events = pd.DatetimeIndex([T0, T0])
    with pytest.raises(FeatureInputError, match=r"asset SOLUSDT funding event 2024-05-01"):
        xa.funding_asof(pd.DatetimeIndex([T0 + H]), events, np.array([1e-4, 2e-4]), H, "SOLUSDT")
    level, _ = xa.funding_asof(pd.DatetimeIndex([T0 + H]), events, np.array([1e-4, 1e-4]), H)
    assert level[0] == 1e-4  # identical duplicates are harmless


def test_rolling_beta_and_correlation_recover_a_planted_relation() -> None:
    rng = np.random.default_rng(1)
    market = rng.normal(0.0, 0.01, 3_000)
    asset = 1.5 * market + rng.normal(0.0, 0.01, 3_000)
    beta, corr = xa.rolling_beta_correlation(asset, market, 168, 135)
    assert np.nanmedian(beta) == pytest.approx(1.5, rel=0.05)
    assert np.nanmedian(corr) == pytest.approx(1.5 / math.sqrt(1.5**2 + 1.0), abs=0.03)
    assert np.nanmax(np.abs(corr)) <= 1.0


def test_cross_sectional_statistics_by_hand() -> None:
    wide = pd.DataFrame(
        {"A": [1.0, 2.0, np.nan], "B": [3.0, 2.0, 5.0], "C": [2.0, np.nan, np.nan]},
        index=pd.DatetimeIndex([T0, T0 + H, T0 + 2 * H]),
    )
    rank = xa.cross_sectional_rank(wide)
    np.testing.assert_allclose(rank.iloc[0], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(rank.iloc[1], [0.5, 0.5, np.nan], equal_nan=True)
    assert rank.iloc[2].isna().all()  # a single asset has no rank
    np.testing.assert_allclose(xa.cross_sectional_mean(wide), [2.0, 2.0, 5.0])
    np.testing.assert_allclose(
        xa.cross_sectional_dispersion(wide, 3), [1.0, np.nan, np.nan], equal_nan=True
    )


def test_basis_and_calendar_encoding_by_hand() -> None:
    basis = xa.perp_basis(np.array([100.0, 100.0, np.nan]), np.array([101.0, np.nan, 100.0]))
    np.testing.assert_allclose(basis, [math.log(1.01), np.nan, np.nan], equal_nan=True)
    # 2024-05-01 was a Wednesday (weekday 2).
    encoded = xa.calendar_encoding(pd.DatetimeIndex([T0, T0 + 6 * H]))
    np.testing.assert_allclose(encoded["hour_sin"], [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(encoded["hour_cos"], [1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(encoded["dow_sin"][0], math.sin(2 * math.pi * 2 / 7))


def three_asset_market(n: int = 400) -> MarketData:
    """BTC and ETH with funding, DOGE without funding or perp; DOGE has a 30-bar outage."""
    rng = np.random.default_rng(3)
    frames = []
    common = rng.normal(0.0, 0.01, n)
    for asset, loading in (("BTCUSDT", 1.0), ("ETHUSDT", 1.2), ("DOGEUSDT", 2.0)):
        ret = loading * common + rng.normal(0.0, 0.005, n)
        close = 50.0 * np.exp(np.cumsum(ret))
        open_ = np.concatenate([[50.0], close[:-1]])
        volume = rng.lognormal(5.0, 0.3, n)
        frame = pd.DataFrame(
            {
                "ts": T0 + H * np.arange(n),
                "asset": asset,
                "open": open_,
                "high": np.maximum(open_, close) * 1.001,
                "low": np.minimum(open_, close) * 0.999,
                "close": close,
                "volume": volume,
                "quote_volume": volume * close,
                "trades": rng.poisson(100, n),
                "taker_buy_volume": volume * 0.5,
                "taker_buy_quote_volume": volume * close * 0.5,
            }
        )
        if asset == "DOGEUSDT":
            frame = frame.drop(index=range(200, 230))
        frames.append(frame)
    times = pd.date_range(T0, periods=n // 8, freq="8h")
    funding = pd.concat(
        [
            pd.DataFrame({"ts": times, "asset": a, "funding_rate": 1e-4})
            for a in ("BTCUSDT", "ETHUSDT")
        ]
    )
    return MarketData(bars=pd.concat(frames, ignore_index=True), funding=funding, interval="1h")


def test_an_asset_without_funding_gets_rows_with_nan_funding_columns() -> None:
    built = build_features(three_asset_market()).frame
    doge = built[built["asset"] == "DOGEUSDT"]
    btc = built[built["asset"] == "BTCUSDT"]
    assert len(doge) == 400  # the outage is on the grid too
    for column in ("funding_rate", "funding_rate_chg", "funding_rate_abs", "perp_basis"):
        assert doge[column].isna().all()
    assert btc["funding_rate"].notna().sum() > 300
    assert doge["rv_24h"].notna().sum() > 300


def test_an_outage_gives_nan_windows_not_forward_filled_values() -> None:
    built = build_features(three_asset_market()).frame
    doge = built[built["asset"] == "DOGEUSDT"].set_index("ts")
    outage = doge.loc[T0 + 200 * H : T0 + 229 * H]
    assert outage["ret_1h"].isna().all()
    assert outage["taker_imbalance"].isna().all()
    assert outage["parkinson_24h"].iloc[6:].isna().all()  # > 20% of the window missing
    assert np.isnan(doge.loc[T0 + 230 * H, "ret_1h"])  # the return across the gap
    # The market index at the outage is the mean of the two assets still trading.
    eth_btc = built[built["asset"] != "DOGEUSDT"].pivot(
        index="ts", columns="asset", values="ret_1h"
    )
    np.testing.assert_allclose(
        outage["mkt_ret"].to_numpy(), eth_btc.loc[outage.index].mean(axis=1).to_numpy()
    )


def test_spillover_columns_are_the_reference_assets_lagged_log_rv() -> None:
    built = build_features(three_asset_market()).frame
    btc = built[built["asset"] == "BTCUSDT"].set_index("ts")["rv_24h"]
    doge = built[built["asset"] == "DOGEUSDT"].set_index("ts")
    np.testing.assert_allclose(
        doge["btc_log_rv_24h_lag1"].iloc[30:].to_numpy(), np.log(btc.shift(1)).iloc[30:].to_numpy()
    )
    np.testing.assert_allclose(
        doge["btc_log_rv_24h_lag24"].iloc[60:].to_numpy(),
        np.log(btc.shift(24)).iloc[60:].to_numpy(),
    )
    # DOGE = 2 c + e, BTC = c + e': beta = 2 var(c) / (var(c) + var(e')) = 2e-4 / 1.25e-4.
    assert doge["beta_btc_168h"].dropna().median() == pytest.approx(1.6, rel=0.1)


def test_missing_reference_asset_gives_nan_cross_columns_not_an_error() -> None:
    market = three_asset_market()
    no_btc = MarketData(
        bars=market.bars[market.bars["asset"] != "BTCUSDT"], funding=market.funding, interval="1h"
    )
    built = build_features(no_btc, FeatureConfig(btc_asset="BTC")).frame
    assert built["beta_btc_168h"].isna().all()
    assert built["btc_log_rv_24h_lag1"].isna().all()
    assert built["eth_log_rv_24h_lag1"].notna().any()
