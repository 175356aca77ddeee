"""Forecast sources of a publication: a calibrated baseline, and the empty fallback."""

from __future__ import annotations

import pandas as pd
import pytest

from contracts.forecast import validate_forecasts
from features.build import FeatureSet, build_features
from features.synthetic import SyntheticMarketConfig, generate_market
from models.forecast_sources import ForecastSourceError, baseline_forecasts, fallback_bundle
from models.spec import CalibrationSpec, TargetSpec


@pytest.fixture(scope="module")
def feature_set() -> FeatureSet:
    return build_features(generate_market(SyntheticMarketConfig(n_assets=3, days=120, seed=3)))


@pytest.mark.parametrize("kind", ["har", "ewma"])
def test_baseline_forecasts_meet_the_contract(feature_set: FeatureSet, kind: str) -> None:
    calibration = CalibrationSpec(kind="split", window_days=30)
    bundle = baseline_forecasts(kind, feature_set, TargetSpec(), calibration, history_days=10)  # type: ignore[arg-type]
    frame = bundle.forecasts
    validate_forecasts(frame)
    assert bundle.source == f"baseline:{kind}" and not bundle.is_fallback
    assert frame["ts"].max() == feature_set.frame["ts"].max()
    assert frame["ts"].min() >= frame["ts"].max() - pd.Timedelta(days=10)
    assert (frame["sigma_lower"] <= frame["sigma"]).all()
    assert (frame["var_99"] <= frame["es_99"]).all()
    assert set(frame["asset"]) == set(feature_set.frame["asset"].astype(str))


def test_a_baseline_needs_data_before_its_calibration_window(feature_set: FeatureSet) -> None:
    with pytest.raises(ForecastSourceError, match="no training rows before"):
        baseline_forecasts(
            "har", feature_set, TargetSpec(), CalibrationSpec(window_days=200), history_days=10
        )


def test_fallback_bundle_is_a_valid_empty_forecast(feature_set: FeatureSet) -> None:
    bundle = fallback_bundle("no champion", feature_set)
    assert bundle.is_fallback and bundle.forecasts.empty
    validate_forecasts(bundle.forecasts)
    assert pd.Timestamp(feature_set.data_end) == feature_set.frame["ts"].max() + pd.Timedelta(
        hours=1
    )
