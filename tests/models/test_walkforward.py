"""End-to-end walk-forward on a synthetic market: keys, contract, honest folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts.forecast import forecast_frame
from features.market import MarketData
from models.spec import CalibrationSpec, LGBMParams, TargetSpec
from models.walkforward import EvaluationConfig, EvaluationInputError, run_evaluation

MODELS = ("ewma", "har", "harq", "garch", "lgbm")


@pytest.fixture(scope="module")
def result(synthetic_market: MarketData):
    config = EvaluationConfig(
        models=MODELS,
        warmup_months=2,
        tune_months=2,
        calibration=CalibrationSpec(window_days=60),
        train_windows=(None, 60),
        estimators={"lgbm": LGBMParams(n_estimators=60, row_stride=2, min_child_samples=50)},
    )
    return run_evaluation(synthetic_market, "2024-06-01", "2024-08-01", config)


def test_json_has_the_stable_keys(result) -> None:
    data = result.to_json_dict()
    for asset in ("BTCUSDT", "ETHUSDT"):
        entry = data["assets"][asset]
        assert set(entry["qlike"]) == set(MODELS)
        assert all(np.isfinite(v) and v >= 0 for v in entry["qlike"].values())
        assert "lgbm" in entry["dm_pvalue"] or entry["best_baseline"] == "lgbm"
        for key in ("exceptions", "kupiec_p", "zone", "n", "exceptions_250", "zone_scaled"):
            assert key in entry["var99"]
        assert entry["var99"]["n"] >= 55  # one non-overlapping day per test day
    assert set(data["mean"]["qlike"]) == set(MODELS)
    assert data["tuning"]["har"]["window"] in ("expanding", "60")
    assert data["config"]["splitter"]["purge"] == 24


def test_forecasts_cover_only_the_test_period_and_meet_the_contract(result) -> None:
    fc = result.forecasts
    assert fc["ts"].min() >= pd.Timestamp("2024-06-01", tz="UTC")
    assert fc["ts"].max() < pd.Timestamp("2024-08-01", tz="UTC")
    contract = forecast_frame(fc, "test")
    assert len(contract) == len(fc.dropna(subset=["sigma"]))
    assert contract["var_99"].notna().all()


def test_a_test_period_before_the_data_is_refused(synthetic_market: MarketData) -> None:
    with pytest.raises(EvaluationInputError, match="not before the test start"):
        config = EvaluationConfig(models=("har",), primary="har")
        run_evaluation(synthetic_market, "2023-01-01", "2023-02-01", config)


def test_har_window_tuning_ignores_everything_from_the_test_start(
    synthetic_features: pd.DataFrame,
) -> None:
    from models.factory import build_forecaster
    from models.spec import named_spec
    from models.splitter import WalkForwardSplitter
    from models.targets import attach_targets
    from models.walkforward import walk_forward_predict
    from models.window_tuning import tune_training_windows

    test = WalkForwardSplitter("2024-06-01", "2024-08-01")
    forecasters = {"har": build_forecaster(named_spec("har"), "1h")}

    def walk(rows, forecaster, splitter, name):  # type: ignore[no-untyped-def]
        return walk_forward_predict(rows, forecaster, splitter, 120, lambda _m: None, name)[0]

    frame = synthetic_features.sort_values(["asset", "ts"]).reset_index(drop=True)
    altered = frame.copy()
    future = (altered["ts"] >= "2024-06-01").to_numpy()
    altered.loc[future, "ret_1h"] = altered.loc[future, "ret_1h"] * 5.0

    def tune(f: pd.DataFrame) -> dict[str, object]:
        panel = attach_targets(f, TargetSpec(horizon=24), "1h")
        return tune_training_windows(panel, test, forecasters, (None, 60), 2, walk, print)

    assert tune(frame) == tune(altered)
