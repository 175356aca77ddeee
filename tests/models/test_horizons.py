"""Multi-horizon targets and splits: point-in-time per horizon, purge scaling with H."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.spec import DEFAULT_HORIZON, HORIZONS, TargetSpec, named_spec
from models.splitter import SplitError, WalkForwardSplitter
from models.targets import forward_adverse_move, forward_targets

STEP = pd.Timedelta(hours=1)


def _returns(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "asset": "BTC", "ret": rng.normal(0, 0.01, n)})


def test_the_settings_default_is_the_spec_default() -> None:
    from pipelines.settings import Settings

    assert Settings().horizon_hours == DEFAULT_HORIZON == TargetSpec().horizon


@pytest.mark.parametrize("horizon", HORIZONS, ids=lambda h: f"{h}h")
def test_variance_target_uses_exactly_the_returns_after_t_up_to_t_plus_h(horizon: int) -> None:
    returns = _returns()
    t = 100
    base = forward_targets(returns, horizon)["rv_fwd"].iloc[t]
    expected = float(np.sum(returns["ret"].to_numpy()[t + 1 : t + horizon + 1] ** 2))
    assert base == pytest.approx(expected, rel=1e-12)
    for moved, changes in (
        (t, False),
        (t + 1, True),
        (t + horizon, True),
        (t + horizon + 1, False),
    ):
        shocked = returns.copy()
        shocked.loc[moved, "ret"] += 0.05
        value = forward_targets(shocked, horizon)["rv_fwd"].iloc[t]
        assert (value != pytest.approx(base, rel=1e-12)) is changes, (horizon, moved)


@pytest.mark.parametrize("horizon", HORIZONS, ids=lambda h: f"{h}h")
@pytest.mark.parametrize("side", ["long", "short"])
def test_adverse_move_uses_exactly_the_returns_after_t_up_to_t_plus_h(
    horizon: int, side: str
) -> None:
    returns = _returns(seed=horizon)
    t = 100
    base = forward_adverse_move(returns, horizon, side).iloc[t]
    path = np.cumsum(returns["ret"].to_numpy()[t + 1 : t + horizon + 1])
    if side == "long":
        expected = 1.0 - np.exp(min(path.min(), 0.0))
    else:
        expected = np.exp(max(path.max(), 0.0)) - 1.0
    assert base == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # A large adverse shock inside the window moves the target; outside it never does.
    shock = -0.2 if side == "long" else 0.2
    for moved, changes in (
        (t, False),
        (t + 1, True),
        (t + horizon, True),
        (t + horizon + 1, False),
    ):
        shocked = returns.copy()
        shocked.loc[moved, "ret"] += shock
        value = forward_adverse_move(shocked, horizon, side).iloc[t]
        assert (value != pytest.approx(base, rel=1e-12, abs=1e-15)) is changes, (horizon, moved)


def test_adverse_move_is_nan_at_the_end_and_over_a_gap() -> None:
    returns = _returns(50)
    returns.loc[30, "ret"] = np.nan
    moves = forward_adverse_move(returns, 4, "long")
    assert moves.iloc[-4:].isna().all() and moves.iloc[:-4].notna().sum() == 46 - 4
    assert moves.iloc[26:30].isna().all() and np.isfinite(moves.iloc[25])
    assert (moves.dropna() >= 0).all()


@pytest.mark.parametrize("horizon", HORIZONS, ids=lambda h: f"{h}h")
@pytest.mark.parametrize("embargo", [0, 6])
def test_purge_scales_with_the_horizon(horizon: int, embargo: int) -> None:
    splitter = WalkForwardSplitter(
        "2024-03-01", "2024-05-01", horizon=horizon, interval="1h", embargo=embargo
    )
    ts = pd.Series(pd.date_range("2024-01-01", "2024-05-01", freq="1h", tz="UTC"))
    for fold in splitter.folds():
        train = ts[splitter.train_mask(ts, fold)]
        # Every training target (t, t+H] is complete before the fold's first forecast ...
        assert (train + horizon * STEP <= fold.test_start).all()
        # ... and the gap is exactly the purge plus the embargo, not wider.
        assert train.max() == fold.test_start - (horizon + embargo) * STEP
    with pytest.raises(SplitError, match="shorter than the horizon"):
        WalkForwardSplitter("2024-03-01", "2024-05-01", horizon=horizon, purge=horizon - 1)


def test_a_tail_estimator_needs_an_adverse_move_target() -> None:
    with pytest.raises(ValueError, match="adverse_move target"):
        named_spec("tail_lgbm", TargetSpec(horizon=12))
    with pytest.raises(ValueError, match="variance target"):
        named_spec("har", TargetSpec(kind="adverse_move"))
    spec = named_spec("tail_scaled", TargetSpec(kind="adverse_move", horizon=4, side="short"))
    assert spec.target.column == "adverse_fwd" and spec.target.label == "adverse_short_4h"


def test_the_factory_hands_the_target_level_and_horizon_to_the_tail_estimators() -> None:
    from models.estimators.tail import QuantileGBMForecaster, ScaledQuantileForecaster
    from models.factory import build_forecaster

    target = TargetSpec(kind="adverse_move", horizon=12, level=0.975)
    gbm = build_forecaster(named_spec("tail_lgbm", target), "1h").estimator
    base = build_forecaster(named_spec("tail_scaled", target), "1h").estimator
    assert isinstance(gbm, QuantileGBMForecaster) and isinstance(base, ScaledQuantileForecaster)
    assert (gbm.level, gbm.horizon, base.level, base.horizon) == (0.975, 12, 0.975, 12)


@pytest.mark.parametrize(("horizon", "days_per_window"), [(12, 1), (24, 1), (48, 2)])
def test_the_var_backtest_keeps_windows_that_do_not_overlap(horizon: int, days_per_window: int):
    from models.scoring import Scoring, score_forecasts

    rng = np.random.default_rng(horizon)
    ts = pd.date_range("2024-01-01", periods=24 * 100, freq="1h", tz="UTC")
    rows = []
    for model in ("har", "lgbm"):
        rows.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "asset": "BTC",
                    "model": model,
                    "variance": rng.uniform(5e-4, 2e-3, ts.size),
                    "rv": rng.chisquare(5, ts.size) * 2e-4,
                    "ret_fwd": rng.normal(0, 0.03, ts.size),
                    "var_99": 0.08,
                    "es_99": 0.1,
                }
            )
        )
    metrics = score_forecasts(
        pd.concat(rows, ignore_index=True), ["har", "lgbm"], Scoring("lgbm", horizon)
    )
    assert metrics["assets"]["BTC"]["var99"]["n"] == 100 // days_per_window
