"""Training helpers: the scored window, the model-input leakage check, the training panel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import FeatureSet, build_features
from features.synthetic import SyntheticMarketConfig, generate_market
from models.spec import TargetSpec
from models.targets import attach_targets
from models.training import TrainingInputError, leakage_evidence, scored_window
from models.walkforward import EvaluationConfig

SHORT = EvaluationConfig(warmup_months=1, tune_months=1)


@pytest.fixture(scope="module")
def feature_set() -> FeatureSet:
    return build_features(generate_market(SyntheticMarketConfig(n_assets=3, days=120, seed=3)))


def test_scored_window_refuses_too_short_data(feature_set: FeatureSet) -> None:
    window = scored_window(feature_set, 20, SHORT, TargetSpec(horizon=24))
    assert window.end - window.start == pd.Timedelta(days=20)
    assert window.end <= feature_set.frame["ts"].max() - pd.Timedelta(hours=23)
    with pytest.raises(TrainingInputError, match="too short"):
        scored_window(feature_set, 60, SHORT, TargetSpec(horizon=24))


def test_leakage_evidence_flags_a_model_reading_targets() -> None:
    class Reads:
        def __init__(self, names: list[str]) -> None:
            self.feature_names_ = names

    passed, detail = leakage_evidence(Reads(["rv_24h", "rv_fwd"]), True, "features ok")  # type: ignore[arg-type]
    assert not passed and "rv_fwd" in detail
    passed, detail = leakage_evidence(Reads(["rv_24h"]), True, "features ok")  # type: ignore[arg-type]
    assert passed and "none a target" in detail
    assert leakage_evidence(Reads(["rv_24h"]), False, "features leak")[0] is False  # type: ignore[arg-type]


def test_training_panel_targets_are_the_forward_sum(feature_set: FeatureSet) -> None:
    panel = attach_targets(feature_set.frame, TargetSpec(horizon=24), feature_set.interval)
    one = panel[panel["asset"] == panel["asset"].iloc[0]].reset_index(drop=True)
    r = one["ret_1h"].to_numpy()
    expected = np.sum(r[1:25] ** 2)
    assert one.loc[0, "rv_fwd"] == pytest.approx(expected, rel=1e-12)
    assert one["rv_fwd"].tail(24).isna().all()


def test_training_adds_the_horizon_and_tail_evidence_the_review_gates_read(
    synthetic_feature_set: FeatureSet,
) -> None:
    from models.review import (
        CandidateEvidence,
        GateConfig,
        horizon_gates,
        quantile_coverage_gates,
    )
    from models.spec import CalibrationSpec, LGBMParams
    from models.training import ScoredWindow, add_forecast_evidence
    from models.walkforward import EvaluationResult

    config = EvaluationConfig(
        models=("har", "lgbm"),
        warmup_months=2,
        tune_months=1,
        train_windows=(None,),
        calibration=CalibrationSpec(window_days=45),
        estimators={"lgbm": LGBMParams(n_estimators=40, min_child_samples=50, row_stride=3)},
        horizons=(4, 24),
        tails=True,
    )
    window = ScoredWindow(
        pd.Timestamp("2024-07-01", tz="UTC"), pd.Timestamp("2024-08-01", tz="UTC")
    )
    target = TargetSpec(horizon=24)
    empty = EvaluationResult(metrics={"assets": {}}, forecasts=pd.DataFrame())
    unchanged = add_forecast_evidence(synthetic_feature_set, window, SHORT, target, empty)
    assert unchanged is empty
    evaluation = add_forecast_evidence(synthetic_feature_set, window, config, target, empty)
    assert list(evaluation.metrics["horizons"]) == ["4"]  # 24 h is the target's own gate
    assert {"adverse_long_4h", "adverse_short_24h"} <= set(evaluation.metrics["tails"])
    evidence = CandidateEvidence(
        model="lgbm",
        evaluation=evaluation.metrics,
        forecasts=pd.DataFrame(),
        data_through=window.end.to_pydatetime(),
        horizon_hours=24,
    )
    results = [
        *horizon_gates(evidence, GateConfig()),
        *quantile_coverage_gates(evidence, GateConfig()),
    ]
    names = [r.name for r in results]
    assert "qlike_vs_har_4h" in names
    assert {
        f"quantile_coverage_adverse_{s}_{h}h" for s in ("long", "short") for h in (4, 24)
    } <= set(names)
    for result in results:
        if result.name.startswith("quantile_coverage"):
            assert 0.0 <= result.metrics["kupiec_p.BTCUSDT"] <= 1.0
