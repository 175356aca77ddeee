"""One conformance test for every forecaster the factory builds: kind x calibration.

Like scikit-learn's ``check_estimator``, the checks are written once and run over the whole
cross-product of estimator kinds (every named forecaster) and calibration parts, so a new
estimator or calibration gets them by being added to the spec, not by new tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.base import clone

from contracts.forecast import FORECAST_COLUMNS, validate_forecasts
from models.calibrated import CalibratedForecaster
from models.estimators.base import DEFAULT_TAGS, ForecasterInputError
from models.factory import build_forecaster
from models.spec import (
    NAMED_FORECASTERS,
    TAIL_KINDS,
    TAIL_MODELS,
    CalibrationSpec,
    FeatureSetSpec,
    ForecasterSpec,
    HARParams,
    LGBMParams,
    QuantileLGBMParams,
    SpecError,
    TargetSpec,
    named_spec,
)
from models.targets import attach_targets

CALIBRATIONS = {
    "none": CalibrationSpec(kind="none"),
    "split": CalibrationSpec(kind="split", window_days=30),
    "adaptive": CalibrationSpec(kind="adaptive", window_days=30),
}
FAST = {
    "lgbm": LGBMParams(n_estimators=30, min_child_samples=50, row_stride=3),
}
VARIANCE = [n for n, (_, params) in NAMED_FORECASTERS.items() if params.kind not in TAIL_KINDS]
CASES = [(name, cal) for name in VARIANCE for cal in CALIBRATIONS]
TAIL_FAST = {"tail_lgbm": QuantileLGBMParams(n_estimators=30, min_child_samples=50)}


@pytest.fixture(scope="module")
def panel(synthetic_features: pd.DataFrame) -> pd.DataFrame:
    return attach_targets(synthetic_features, TargetSpec(horizon=12), "1h")


def _spec(name: str, calibration: str) -> ForecasterSpec:
    return named_spec(name, TargetSpec(horizon=12), CALIBRATIONS[calibration], FAST.get(name))


@pytest.mark.parametrize(("name", "calibration"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_every_forecaster_conforms(panel: pd.DataFrame, name: str, calibration: str) -> None:
    forecaster = build_forecaster(_spec(name, calibration), "1h")
    # scikit-learn contract: parameters only, clone-able, no fitted state before fit.
    assert isinstance(forecaster, CalibratedForecaster)
    twin = clone(forecaster)
    assert twin is not forecaster and twin.get_params().keys() == forecaster.get_params().keys()
    assert not any(k.endswith("_") for k in vars(forecaster)), "fitted state before fit"
    with pytest.raises(ForecasterInputError, match="not fitted"):
        forecaster.predict(panel.head(3))
    # Every declared tag has a value of its default's type; none is answered by class name.
    for tag, default in DEFAULT_TAGS.items():
        assert type(forecaster.get_tag(tag)) is type(default), tag

    features = panel.drop(columns=["rv_fwd", "ret_fwd"])
    rv = panel["rv_fwd"].to_numpy()
    fit_rows = ((panel["ts"] < "2024-06-01") & np.isfinite(rv) & (rv > 0)).to_numpy()
    forecaster.fit(features.loc[fit_rows], rv[fit_rows])
    later = (panel["ts"] >= "2024-06-01").to_numpy()
    history = forecaster.get_tag("requires_history")
    rows = features if history else features.loc[later]
    variance = forecaster.predict(rows)
    finite = np.isfinite(variance)  # a filter has no forecast before its first return
    assert variance.shape == (len(rows),) and finite.mean() > 0.9 and (variance[finite] > 0).all()
    assert set(forecaster.feature_names_) <= set(features.columns)

    # Calibration on out-of-sample rows, then Forecast-contract output.
    oos = pd.DataFrame(
        {
            "ts": panel["ts"],
            "variance": forecaster.predict(features),
            "rv": rv,
            "ret_fwd": panel["ret_fwd"],
        }
    ).loc[later]
    forecaster.calibrate_on(oos)
    frame = forecaster.forecast(rows, "v-test")
    assert tuple(frame.columns) == FORECAST_COLUMNS
    validate_forecasts(frame)
    assert (frame["model"] == name).all() and (frame["model_version"] == "v-test").all()
    bounds = frame[["sigma_lower", "sigma_upper", "var_99", "es_99"]].notna().all(axis=1)
    has_sigma = frame["sigma"].notna()
    assert has_sigma.mean() > 0.9
    if calibration == "none":
        assert not bounds.any()
    else:  # every forecast carries its interval, VaR and ES; a missing one carries none
        assert (bounds == has_sigma).all()

    # A clone of the fitted forecaster is unfitted and independent.
    assert not hasattr(clone(forecaster), "estimator_")


@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("name", TAIL_MODELS)
def test_every_tail_forecaster_conforms(synthetic_features: pd.DataFrame, name: str, side: str):
    target = TargetSpec(kind="adverse_move", horizon=12, side=side)
    panel = attach_targets(synthetic_features, target, "1h")
    forecaster = build_forecaster(named_spec(name, target, estimator=TAIL_FAST.get(name)), "1h")
    twin = clone(forecaster)
    assert twin.get_params().keys() == forecaster.get_params().keys()
    assert not any(k.endswith("_") for k in vars(forecaster)), "fitted state before fit"
    assert forecaster.get_tag("quantile_forecast") is True
    features = panel.drop(columns=["rv_fwd", "ret_fwd", "adverse_fwd"])
    y = panel["adverse_fwd"].to_numpy()
    fit_rows = ((panel["ts"] < "2024-06-01") & target.usable(y)).to_numpy()
    forecaster.fit(features.loc[fit_rows], y[fit_rows])
    later = (panel["ts"] >= "2024-06-01").to_numpy() & np.isfinite(y)
    quantile = forecaster.predict(features.loc[later])
    finite = np.isfinite(quantile)
    assert finite.mean() > 0.9 and (quantile[finite] > 0).all()
    # A 99% quantile is exceeded rarely, and far less often than the median move.
    rate = float(np.mean(y[later][finite] > quantile[finite]))
    assert rate < 0.1 and np.median(quantile[finite]) > np.median(y[later])
    with pytest.raises(ForecasterInputError, match="tail quantile"):
        forecaster.forecast(features.head(3), "v")
    assert not hasattr(clone(forecaster), "estimator_")


def test_an_uncalibrated_forecaster_refuses_to_forecast(panel: pd.DataFrame) -> None:
    forecaster = build_forecaster(_spec("har", "split"), "1h")
    features = panel.drop(columns=["rv_fwd", "ret_fwd"])
    ok = np.isfinite(panel["rv_fwd"]).to_numpy()
    forecaster.fit(features.loc[ok], panel.loc[ok, "rv_fwd"].to_numpy())
    with pytest.raises(ForecasterInputError, match="not calibrated"):
        forecaster.forecast(features.head(5), "v")


def test_the_return_column_follows_the_interval() -> None:
    ewma = build_forecaster(named_spec("ewma"), "4h")
    assert ewma.estimator.required_columns == ("ret_4h",)
    assert FeatureSetSpec(name="returns").columns("2h") == ("ret_2h",)
    gbm = build_forecaster(named_spec("lgbm", TargetSpec(horizon=6)), "2h").estimator
    assert (gbm.interval, gbm.horizon, gbm.features) == ("2h", 6, None)


def test_parts_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown forecaster 'svm'"):
        named_spec("svm")
    with pytest.raises(SpecError, match="har estimator; the override is a lgbm"):
        named_spec("har", estimator=LGBMParams())
    with pytest.raises(ValidationError, match="reads the har feature set"):
        ForecasterSpec(name="x", features=FeatureSetSpec(name="returns"), estimator=HARParams())
    with pytest.raises(ValidationError, match="extra"):
        LGBMParams.model_validate({"kind": "lgbm", "n_estimator": 5})
    spec = named_spec("harq", calibration=CalibrationSpec(kind="split"))
    assert ForecasterSpec.model_validate_json(spec.model_dump_json()) == spec
