"""Tail forecasts: quantile estimators, per-asset adaptive conformal calibration, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.estimators.tail import ScaledQuantileForecaster, volatility_scale
from models.evaluation import kupiec_pof, pinball_loss
from models.scoring import non_overlapping
from models.spec import CalibrationSpec, TargetSpec
from models.splitter import WalkForwardSplitter
from models.tails import TailConfig, calibrate_quantiles, run_tail_evaluation

TARGET = TargetSpec(kind="adverse_move", horizon=1, level=0.99)


def test_kupiec_matches_the_textbook_value() -> None:
    # Jorion's example: 10 exceptions in 250 days at 99% VaR. By hand:
    # LR = -2 ln[(0.99^240)(0.01^10)] + 2 ln[(0.96^240)(0.04^10)]
    #    = 2 (48.4638 - 41.9861) = 12.955, beyond chi2(1)'s 1% critical value 6.635.
    result = kupiec_pof(10, 250, 0.01)
    assert result.statistic == pytest.approx(12.955, abs=2e-3)
    assert result.pvalue == pytest.approx(3.19e-4, rel=0.01)
    # The expected count gives LR = 0 and p = 1.
    assert kupiec_pof(5, 500, 0.01).statistic == pytest.approx(0.0, abs=1e-12)


def test_pinball_loss_is_smallest_at_the_true_quantile() -> None:
    y = np.random.default_rng(0).exponential(size=200_000)
    true = -np.log(0.01)  # the 99% quantile of Exp(1)
    losses = {q: pinball_loss(y, np.full_like(y, q), 0.99).mean() for q in (3.0, true, 6.0)}
    assert losses[true] < losses[3.0] and losses[true] < losses[6.0]


def test_non_overlapping_keeps_one_row_every_h_bars() -> None:
    ts = pd.Series(pd.date_range("2024-01-01", periods=96, freq="1h", tz="UTC"))
    day = ts[non_overlapping(ts, 24, pd.Timedelta(hours=1))]
    assert list(day.dt.hour) == [23] * 4  # the daily anchor of the VaR backtest
    assert non_overlapping(ts, 4, pd.Timedelta(hours=1)).sum() == 24
    assert non_overlapping(ts, 1, pd.Timedelta(hours=1)).all()


def _scaled_panel(n_days: int = 200, seed: int = 0) -> pd.DataFrame:
    """Two assets whose moves are |N(0, s)| with a known, varying scale s."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n_days * 24, freq="1h", tz="UTC")
    frames = []
    for asset, level in (("AAA", 1e-4), ("BBB", 4e-4)):
        regime = level * np.exp(np.sin(np.arange(ts.size) / 500.0))
        frame = pd.DataFrame({"ts": ts, "asset": asset})
        for column in ("har_d", "har_w", "har_m"):
            frame[column] = regime
        scale = np.sqrt(regime / 24.0)
        frame["adverse_fwd"] = np.abs(rng.normal(0.0, scale))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_scaled_quantile_covers_its_level_per_asset() -> None:
    panel = _scaled_panel()
    fit, test = panel.loc[panel["ts"] < "2024-05-01"], panel.loc[panel["ts"] >= "2024-05-01"]
    model = ScaledQuantileForecaster(horizon=1, level=0.99).fit(fit, fit["adverse_fwd"])
    q = model.predict(test)
    ratio = q / volatility_scale(test, 1, "1h")
    for asset in ("AAA", "BBB"):
        rows = (test["asset"] == asset).to_numpy()
        assert np.allclose(ratio[rows], ratio[rows][0])  # one scaled quantile per asset
        rate = float(np.mean(test.loc[rows, "adverse_fwd"].to_numpy() > q[rows]))
        assert 0.005 < rate < 0.02, (asset, rate)


def test_conformal_calibration_repairs_a_biased_quantile_per_asset() -> None:
    """A raw forecast at half the true quantile for one asset, right for the other: after
    calibration both cover ~1%, using only outcomes known at each fold's start."""
    panel = _scaled_panel(seed=1)
    scale = volatility_scale(panel, 1, "1h")
    true_q = scale * 2.5758  # 99% quantile of |N(0, s)| is s * z_0.995
    bias = np.where(panel["asset"] == "AAA", 0.5, 1.0)
    preds = panel[["ts", "asset", "adverse_fwd"]].assign(variance=true_q * bias)
    splitter = WalkForwardSplitter("2024-02-01", "2024-07-19", horizon=1, refit="MS")
    spec = CalibrationSpec(kind="adaptive", window_days=30, min_scores=100, gamma=0.005)
    out = calibrate_quantiles(preds, TARGET, spec, splitter.folds(), "1h")
    scored = out.loc[out["ts"] >= "2024-02-01"].dropna(subset=["quantile"])
    for asset in ("AAA", "BBB"):
        rows = scored.loc[scored["asset"] == asset]
        rate = float(np.mean(rows["adverse_fwd"] > rows["quantile"]))
        assert 0.005 < rate < 0.02, (asset, rate)
    raw_rate = float(np.mean(scored["adverse_fwd"] > scored["quantile_raw"]))
    assert raw_rate > 0.1  # the biased asset alone misses about a fifth of the time
    # Point in time: outcomes after a fold's start cannot move that fold's quantiles.
    cut = pd.Timestamp("2024-04-01", tz="UTC")
    shuffled = preds.copy()
    later = (shuffled["ts"] >= cut).to_numpy()
    shuffled.loc[later, "adverse_fwd"] = np.random.default_rng(9).permutation(
        shuffled.loc[later, "adverse_fwd"].to_numpy()
    )
    again = calibrate_quantiles(shuffled, TARGET, spec, splitter.folds(), "1h")
    before = (out["ts"] < cut).to_numpy()
    np.testing.assert_allclose(
        again.loc[before, "quantile"].to_numpy(), out.loc[before, "quantile"].to_numpy()
    )


def test_tail_walk_forward_on_the_synthetic_market(synthetic_feature_set) -> None:
    from models.spec import QuantileLGBMParams

    config = TailConfig(
        sides=("long",),
        warmup_months=2,
        calibration=CalibrationSpec(window_days=45, min_scores=100),
        estimators={"tail_lgbm": QuantileLGBMParams(n_estimators=40, min_child_samples=50)},
    )
    result = run_tail_evaluation(synthetic_feature_set, "2024-06-01", "2024-08-01", [24], config)
    entry = result.metrics["adverse_long_24h"]
    assert set(entry["assets"]) == {"BTCUSDT", "ETHUSDT"}
    for numbers in entry["assets"].values():
        for model in ("tail_scaled", "tail_lgbm"):
            assert numbers[model]["n"] >= 55  # one non-overlapping window per test day
            assert 0 <= numbers[model]["kupiec_p"] <= 1
            assert numbers[model]["pinball"] > 0
        assert "tail_scaled" in numbers["dm_pinball"]
    fc = result.forecasts
    assert fc["ts"].min() >= pd.Timestamp("2024-06-01", tz="UTC")
    assert (fc["quantile"].dropna() > 0).all()


def test_a_newly_listed_asset_gets_no_per_asset_quantile_until_it_has_the_rows() -> None:
    """Listed after a fold's cut, an asset has no rows of its own for an empirical quantile:
    that fold gives it no forecast (and says so) instead of failing every asset; later
    folds forecast it."""
    from models.estimators.tail import MIN_ROWS_PER_ASSET
    from models.factory import build_forecaster
    from models.walkforward import walk_forward_predict

    panel = _scaled_panel(n_days=200)
    listed = pd.Timestamp("2024-04-20", tz="UTC")
    panel = panel.loc[(panel["asset"] == "AAA") | (panel["ts"] >= listed)].reset_index(drop=True)
    panel["rv_fwd"] = panel["adverse_fwd"] ** 2
    panel["ret_fwd"] = 0.0
    target = TargetSpec(kind="adverse_move", horizon=1, level=0.99)
    forecaster = build_forecaster(TailConfig().spec("tail_scaled", target), "1h")
    assert forecaster.get_tag("min_rows_per_asset") == MIN_ROWS_PER_ASSET
    splitter = WalkForwardSplitter("2024-04-01", "2024-07-01", horizon=1, interval="1h")
    said: list[str] = []
    preds, _ = walk_forward_predict(panel, forecaster, splitter, 30, said.append, "q", target)
    first = preds["fold"] == preds["fold"].min()
    new = preds["asset"] == "BBB"
    assert preds.loc[first & new, "variance"].isna().all()
    assert preds.loc[first & new].shape[0] > 0
    assert preds.loc[~new, "variance"].notna().all()
    assert preds.loc[new & ~first, "variance"].notna().any()
    assert any("no forecast" in m and "BBB" in m for m in said)
    # Every test row is there exactly once, each fold in panel order.
    assert not preds.duplicated(["asset", "ts"]).any()
    for _, part in preds.groupby("fold"):
        assert part.index.equals(part.sort_values(["asset", "ts"], kind="stable").index)


def test_a_fold_where_no_asset_has_the_rows_gives_nan_rows_not_a_gap() -> None:
    from models.factory import build_forecaster
    from models.walkforward import walk_forward_predict

    panel = _scaled_panel(n_days=90)
    panel["rv_fwd"] = panel["adverse_fwd"] ** 2
    panel["ret_fwd"] = 0.0
    target = TargetSpec(kind="adverse_move", horizon=1, level=0.99)
    forecaster = build_forecaster(TailConfig().spec("tail_scaled", target), "1h")
    # Two days of history before the first fold: fewer than 100 rows for either asset.
    splitter = WalkForwardSplitter("2024-01-03", "2024-03-01", horizon=1, interval="1h")
    said: list[str] = []
    preds, _ = walk_forward_predict(panel, forecaster, splitter, 30, said.append, "q", target)
    first = preds["fold"] == preds["fold"].min()
    assert first.sum() > 0 and preds.loc[first, "variance"].isna().all()
    assert set(preds.loc[first, "asset"]) == {"AAA", "BBB"}
    assert preds.loc[~first, "variance"].notna().all()
    assert not preds.duplicated(["asset", "ts"]).any()
