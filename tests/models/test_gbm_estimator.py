"""Pooled LightGBM forecaster: contract, early stopping, importance, no target features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models.estimators.gbm import GBMForecaster
from models.evaluation import qlike
from models.targets import forward_targets


def _panel(features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    frame = features.sort_values(["asset", "ts"]).reset_index(drop=True)
    targets = forward_targets(frame[["ts", "asset", "ret_1h"]].rename(columns={"ret_1h": "ret"}))
    return frame, targets["rv_fwd"].to_numpy()


@pytest.fixture(scope="module")
def fitted(synthetic_features: pd.DataFrame) -> tuple[GBMForecaster, pd.DataFrame, np.ndarray]:
    frame, y = _panel(synthetic_features)
    train = (frame["ts"] < "2024-06-01").to_numpy() & np.isfinite(y)
    model = GBMForecaster(n_estimators=120, row_stride=2, n_jobs=1, min_child_samples=50)
    model.fit(frame.loc[train], y[train])
    return model, frame, y


@pytest.mark.parametrize("objective", ["qlike", "log_l2", "blend"])
def test_gbm_beats_a_constant_forecast_out_of_sample(
    synthetic_features: pd.DataFrame, objective: str
) -> None:
    frame, y = _panel(synthetic_features)
    train = (frame["ts"] < "2024-06-01").to_numpy() & np.isfinite(y)
    test = (frame["ts"] >= "2024-06-02").to_numpy() & np.isfinite(y)
    model = GBMForecaster(
        objective=objective, n_estimators=120, row_stride=2, n_jobs=1, min_child_samples=50
    )
    model.fit(frame.loc[train], y[train])
    ours = np.mean(qlike(y[test], model.predict(frame.loc[test])))
    constant = np.mean(qlike(y[test], np.full(test.sum(), np.mean(y[train]))))
    assert ours < constant


def test_early_stopping_and_importance(
    fitted: tuple[GBMForecaster, pd.DataFrame, np.ndarray],
) -> None:
    model, _, _ = fitted
    assert 10 <= model.best_iteration_ <= 120
    assert (model.feature_importances_ >= 0).all() and model.feature_importances_.sum() > 0
    assert {"lr_d_m", "asset_code"} <= set(model.feature_importances_.index)
    assert clone(model).get_params() == model.get_params()


def test_forward_targets_are_never_features(
    fitted: tuple[GBMForecaster, pd.DataFrame, np.ndarray],
) -> None:
    model, frame, y = fitted
    leaky = frame.assign(rv_fwd=y, ret_fwd=y, log_rv_fwd=np.log(y))
    refit = clone(model).fit(leaky.loc[np.isfinite(y)], y[np.isfinite(y)])
    assert not {"rv_fwd", "ret_fwd", "log_rv_fwd"} & set(refit.feature_names_)


def test_an_unseen_asset_is_forecast_without_its_code(
    fitted: tuple[GBMForecaster, pd.DataFrame, np.ndarray],
) -> None:
    model, frame, _ = fitted
    other = frame.iloc[:50].assign(asset="NEWUSDT")
    out = model.predict(other)
    assert np.all(np.isfinite(out)) and np.all(out > 0)
