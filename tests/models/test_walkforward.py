"""End-to-end walk-forward on a synthetic market: keys, contract, honest folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts.forecast import forecast_frame
from features.market import MarketData
from models.walkforward import EvaluationConfig, EvaluationInputError, run_evaluation

MODELS = ("ewma", "har", "harq", "garch", "lgbm")


@pytest.fixture(scope="module")
def result(synthetic_market: MarketData):
    config = EvaluationConfig(
        warmup_months=2,
        tune_months=2,
        calibration_days=60,
        har_windows=(None, 60),
        model_params={"lgbm": {"n_estimators": 60, "row_stride": 2, "min_child_samples": 50}},
    )
    return run_evaluation(
        synthetic_market, "2024-06-01", "2024-08-01", models=MODELS, config=config
    )


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
        run_evaluation(synthetic_market, "2023-01-01", "2023-02-01", models=("har",))


def test_har_window_tuning_ignores_everything_from_the_test_start(
    synthetic_features: pd.DataFrame,
) -> None:
    from models.validation import WalkForwardSplitter
    from models.walkforward import _attach_targets, _tune_har_windows

    cfg = EvaluationConfig(tune_months=2, har_windows=(None, 60))
    test = WalkForwardSplitter("2024-06-01", "2024-08-01")
    frame = synthetic_features.sort_values(["asset", "ts"]).reset_index(drop=True)
    altered = frame.copy()
    future = (altered["ts"] >= "2024-06-01").to_numpy()
    altered.loc[future, "ret_1h"] = altered.loc[future, "ret_1h"] * 5.0

    def tune(f: pd.DataFrame) -> dict[str, object]:
        return _tune_har_windows(_attach_targets(f, cfg), test, cfg, ("har",), lambda _m: None)

    assert tune(frame) == tune(altered)
