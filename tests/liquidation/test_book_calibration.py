"""Calibration figures and the fit/test split (issue #19 item 4, the parts built so far)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from liquidation.calibration import (
    FIT_PERIOD,
    SIDES,
    TEST_PERIOD,
    calibration_rows,
    daily_liquidations,
    daily_log_range,
    fit_level_scale,
    fit_window,
    liquidated_share_of_oi,
    long_share_of_top_days,
    pearson,
    top_day_share,
)


def test_fit_window_never_reads_the_test_period() -> None:
    days = pd.date_range("2020-12-23", "2025-06-30", freq="D", tz="UTC")
    frame = pd.DataFrame({"ts": days, "x": np.arange(len(days))})
    fit = fit_window(frame)
    assert fit["ts"].min() >= FIT_PERIOD[0]
    assert fit["ts"].max() < TEST_PERIOD[0]
    assert len(fit) == (FIT_PERIOD[1] - FIT_PERIOD[0]).days
    # Hourly rows stamped in the last hour of 2022 stay in; the first of 2023 does not.
    hours = pd.DataFrame({"ts": pd.date_range("2022-12-31 22:00", periods=4, freq="h", tz="UTC")})
    assert len(fit_window(hours)) == 2


def test_periods_do_not_overlap_and_follow_the_level_break() -> None:
    assert FIT_PERIOD[1] <= TEST_PERIOD[0]
    assert FIT_PERIOD[0] > pd.Timestamp("2021-04-27", tz="UTC")


def test_daily_log_range_takes_the_days_extremes() -> None:
    ts = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    high = np.full(48, 101.0)
    low = np.full(48, 99.0)
    high[5], low[30] = 110.0, 90.0
    bars = pd.DataFrame({"ts": ts, "high": high, "low": low})
    out = daily_log_range(bars)
    assert out.iloc[0] == pytest.approx(np.log(110 / 99))
    assert out.iloc[1] == pytest.approx(np.log(101 / 90))


def test_liquidation_figures() -> None:
    raw = pd.DataFrame(
        {
            "ts": pd.date_range("2023-01-01", periods=200, freq="D", tz="UTC"),
            "long_liquidations_usd": np.r_[np.full(199, 1.0), 100.0],
            "short_liquidations_usd": np.r_[np.full(199, 1.0), 0.0],
        }
    )
    liq = daily_liquidations(raw)
    # floor(1% x 200) = 2 days: the 100 and one 2.
    assert top_day_share(liq["total"]) == pytest.approx(102 / (199 * 2 + 100))
    assert long_share_of_top_days(liq, 1) == 1.0
    stamped = daily_liquidations(raw.assign(ts=raw["ts"] + pd.Timedelta(days=1)), day_open=False)
    pd.testing.assert_frame_equal(stamped, liq)
    assert pearson(liq["total"], liq["long"]) == pytest.approx(1.0)


def test_liquidated_share_of_open_interest() -> None:
    days = pd.date_range("2023-01-01", periods=4, freq="D", tz="UTC")
    liq = pd.Series([1.0, 2.0, 3.0, 4.0], index=days)
    oi = pd.Series([100.0, 0.0, 300.0, np.nan], index=days)
    # Days without a positive open interest are left out: (0.01 + 0.01) / 2.
    assert liquidated_share_of_oi(liq, oi) == pytest.approx(0.01)
    assert np.isnan(liquidated_share_of_oi(liq, pd.Series(dtype=float)))


def _daily(seed: int, days: pd.DatetimeIndex) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    long_, short = rng.lognormal(16, 1, len(days)), rng.lognormal(16, 1, len(days))
    return pd.DataFrame({"long": long_, "short": short, "total": long_ + short}, index=days)


def test_calibration_rows_fit_never_reads_the_test_period() -> None:
    """The level scale and the baseline's line come from the fit days: changing every real,
    simulated and range value of the test period changes no fit row and no fitted number."""
    days = pd.date_range("2021-05-01", "2025-06-30", freq="D", tz="UTC")
    real = _daily(1, days)
    sim = _daily(2, days).assign(open_notional=1e9)
    log_range = pd.Series(np.random.default_rng(3).uniform(0.01, 0.1, len(days)), index=days)
    down = pd.Series(np.arange(len(days)) % 2 == 0, index=days)
    oi = pd.Series(2e9, index=days[days >= "2022-01-01"])
    rows = calibration_rows("BTCUSDT", real, sim, log_range, down, oi)
    test = days >= TEST_PERIOD[0]
    real2, sim2, range2 = real.copy(), sim.copy(), log_range.copy()
    real2.loc[test, ["long", "short", "total"]] *= 10.0
    sim2.loc[test, ["long", "short", "total"]] *= 0.1
    range2.loc[test] *= 3.0
    again = calibration_rows("BTCUSDT", real2, sim2, range2, down, oi)
    assert [r for r in again if r["period"] == "fit"] == [r for r in rows if r["period"] == "fit"]
    assert {r["scale"] for r in again} == {rows[0]["scale"]}
    assert [r for r in again if r["period"] == "test"] != [r for r in rows if r["period"] == "test"]
    # One row per period and side; the fit's level is the real one by construction.
    assert [(r["period"], r["side"]) for r in rows] == [
        (p, s) for p in ("fit", "test") for s in SIDES
    ]
    assert rows[0]["level_sim"] == pytest.approx(rows[0]["level_real"])
    assert fit_level_scale(real["total"], sim["total"]) == rows[0]["scale"]
