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
