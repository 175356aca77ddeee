"""Procyclicality and ratchet figures on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liquidation.procyclicality import (
    calm_capital,
    largest_rise,
    peak_to_trough,
    ratchet_diagnostics,
    replay_procyclicality,
    trailing_realized_vol,
)
from liquidation.simulate import ReplayInputError, ReplaySeries

HOUR_MS = 3_600_000


def test_ratchet_diagnostics_by_hand():
    path = np.array([[1.0, 3.0, 3.0, 0.8], [2.0, 2.0, np.nan, 3.0]])
    got = ratchet_diagnostics(path, floor=0.8, cap=3.0)
    # Seven finite cells: sum 14.8, three at the cap, one at the floor.
    assert got["mean_multiplier"] == pytest.approx(14.8 / 7)
    assert got["time_at_cap"] == pytest.approx(3 / 7)
    assert got["time_at_floor"] == pytest.approx(1 / 7)
    assert math.isnan(ratchet_diagnostics(np.array([np.nan]), 0.8, 3.0)["mean_multiplier"])


def test_peak_to_trough_ignores_empty_bars():
    assert peak_to_trough(np.array([0.0, 2.0, 8.0, 4.0])) == 4.0
    assert math.isnan(peak_to_trough(np.zeros(3)))


def test_largest_rise_by_hand_max_over_assets():
    one = np.array([5.0, 1.0, 2.0, 4.0, 3.0])
    assert largest_rise(one, window=1) == 2.0  # 2 -> 4
    assert largest_rise(one, window=2) == 3.0  # 1 -> 4
    assert largest_rise(one, window=10) == 3.0
    two = np.vstack([one, [0.0, 0.0, 0.0, 0.0, 10.0]])
    assert largest_rise(two, window=1) == 10.0
    assert largest_rise(np.array([3.0, 2.0, 1.0]), window=2) == 0.0  # never rises
    with pytest.raises(ReplayInputError):
        largest_rise(one, window=0)


def test_trailing_realized_vol_uses_completed_bars_only():
    close = np.exp(np.array([0.0, 0.1, 0.0, 0.2, 0.2, 0.5]))
    vol = trailing_realized_vol(close, window=2)
    # returns: 0.1, -0.1, 0.2, 0.0, 0.3 (ending at bars 1..5)
    assert np.isnan(vol[:3]).all()
    assert vol[3] == pytest.approx(np.std([0.1, -0.1], ddof=1))  # bars 1, 2: known at 3's open
    assert vol[4] == pytest.approx(np.std([-0.1, 0.2], ddof=1))
    assert vol[5] == pytest.approx(np.std([0.2, 0.0], ddof=1))
    # Point in time: changing the last close changes no estimate.
    moved = close.copy()
    moved[-1] *= 3
    np.testing.assert_array_equal(trailing_realized_vol(moved, 2), vol)


def test_calm_capital_by_hand():
    im = np.array([[1.0, 2.0, 9.0, 4.0, 6.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    static = np.full_like(im, 4.0)
    vol = np.array([[0.2, 0.1, 0.9, np.nan, 0.5, 0.8], [0.3, 0.2, 0.1, 0.4, 0.5, 0.6]])
    got = calm_capital(im, static, vol)
    # Asset 0: five known bars, calmest 5 // 3 = 1: bar 1 (im 2). Asset 1: two bars (5, 5).
    assert got["calm_mean_im"] == pytest.approx(2.0 + 5.0)
    assert got["static_calm_mean_im"] == pytest.approx(8.0)
    assert got["ratio"] == pytest.approx(7.0 / 8.0)
    with pytest.raises(ReplayInputError, match="shapes"):
        calm_capital(im, static[:1], vol)


def _series(label: str, seed: int, im: list[float], notional: float = 100.0) -> ReplaySeries:
    n = len(im)
    zeros_i, zeros_f = np.zeros(n, dtype=np.int64), np.zeros(n)
    return ReplaySeries(
        label=label,
        seed=seed,
        ts_ms=np.arange(n, dtype=np.int64) * HOUR_MS,
        multiplier=np.ones(n),
        liquidations=zeros_i,
        positions_liquidated=zeros_i,
        full_closeouts=zeros_i,
        liquidated_notional=zeros_f,
        bad_debt=zeros_f,
        fund=zeros_f,
        adl_events=zeros_i,
        adl_absorbed=zeros_f,
        socialized=zeros_f,
        initial_margin=np.array(im, dtype=float),
        open_notional=np.full(n, notional),
        opened=zeros_i,
        topups=zeros_i,
        fund_seed=0.0,
    )


def test_replay_procyclicality_means_over_seeds_against_equal_margin_static():
    n = 30
    close = np.exp(np.cumsum(np.tile([0.01, -0.01, 0.03, -0.03, 0.0], 6)))[None, :]
    im0 = [10.0] * 10 + [40.0] * 20
    im1 = [20.0] * 30
    series = {
        "static": [_series("static", 0, [20.0] * n), _series("static", 1, [20.0] * n)],
        "model": [_series("model", 0, im0), _series("model", 1, im1)],
    }
    equal = {"model": [_series("static", 0, [25.0] * n), _series("static", 1, [25.0] * n)]}
    paths = {"static": np.ones((1, n)), "model": np.array([[1.0] * 10 + [3.0] * 20])}
    got = replay_procyclicality(series, equal, paths, close, HOUR_MS, floor=0.8, cap=3.0)
    model = got["model"]
    assert model["ratchet"]["time_at_cap"] == pytest.approx(20 / 30)
    assert model["ratchet"]["largest_rise_multiplier_24h"] == pytest.approx(2.0)
    assert model["peak_to_trough_im"]["mean"] == pytest.approx((4.0 + 1.0) / 2)
    # Constant open notional: the rate's ratio is the USD ratio.
    assert model["peak_to_trough_im_rate"]["mean"] == pytest.approx((4.0 + 1.0) / 2)
    assert model["largest_rise_im_24h_usd"]["mean"] == pytest.approx((30.0 + 0.0) / 2)
    assert model["largest_rise_im_24h_usd"]["std"] == pytest.approx(15.0)
    # The calm ratio is against the equal-margin static run of the same seed (25 USD).
    vol = trailing_realized_vol(close, 24)[0]
    known = np.flatnonzero(np.isfinite(vol))
    calm = known[np.argsort(vol[known], kind="stable")[: len(known) // 3]]
    expected0 = np.mean(np.array(im0)[calm]) / 25.0
    assert model["calm_im_vs_static"]["mean"] == pytest.approx((expected0 + 20.0 / 25.0) / 2)
    assert got["static"]["calm_im_vs_static"]["mean"] == pytest.approx(1.0)


def test_a_book_that_grows_at_a_constant_margin_rate_has_a_rate_ratio_of_one():
    grow = _series("model", 0, [10.0, 20.0, 40.0, 0.0])
    grow = ReplaySeries(**{**grow.__dict__, "open_notional": np.array([100.0, 200.0, 400.0, 0.0])})
    static = _series("static", 0, [10.0, 10.0, 10.0, 10.0])
    close = np.ones((1, 4))
    got = replay_procyclicality(
        {"model": [grow], "static": [static]}, {"model": [static]}, {}, close, HOUR_MS, 0.8, 3.0
    )
    assert got["model"]["peak_to_trough_im"]["mean"] == pytest.approx(4.0)
    assert got["model"]["peak_to_trough_im_rate"]["mean"] == pytest.approx(1.0)
    assert "ratchet" not in got["model"]  # no multiplier path given


def test_per_asset_rises_are_of_each_asset_not_of_the_book_total():
    # Two assets whose margins move in opposite directions: the book total is flat, yet
    # asset 1's IM rises by 30 within a day.
    per_asset = np.array([[40.0] * 10 + [10.0] * 20, [10.0] * 10 + [40.0] * 20])
    run = ReplaySeries(
        **{**_series("model", 0, [50.0] * 30).__dict__, "initial_margin_asset": per_asset}
    )
    static = _series("static", 0, [50.0] * 30)
    close = np.exp(np.cumsum(np.tile([0.01, -0.01, 0.03], 10)))[None, :]
    got = replay_procyclicality(
        {"model": [run], "static": [static]}, {"model": [static]}, {}, close, HOUR_MS, 0.8, 3.0
    )
    assert got["model"]["largest_rise_im_24h_usd"]["mean"] == pytest.approx(0.0)
    assert got["model"]["largest_rise_asset_im_24h_usd"]["mean"] == pytest.approx(30.0)
    assert got["model"]["largest_rise_asset_im_5d_usd"]["mean"] == pytest.approx(30.0)
    # Series built without the split give the book figures only.
    assert "largest_rise_asset_im_24h_usd" not in got["static"]
