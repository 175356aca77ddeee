"""Baseline estimators: hand-checked recursions, HAR recovery, GARCH against ``arch``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.estimators.base import ForecasterInputError
from models.estimators.ewma import EWMAForecaster
from models.estimators.garch import GARCHForecaster
from models.estimators.har import HARForecaster
from models.factory import build_estimator
from models.spec import named_spec
from models.targets import forward_targets


def _panel(synthetic_features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    frame = synthetic_features.sort_values(["asset", "ts"]).reset_index(drop=True)
    targets = forward_targets(frame[["ts", "asset", "ret_1h"]].rename(columns={"ret_1h": "ret"}))
    return frame, targets["rv_fwd"].to_numpy()


def test_ewma_matches_the_riskmetrics_recursion_by_hand(synthetic_features: pd.DataFrame) -> None:
    frame, y = _panel(synthetic_features)
    model = EWMAForecaster(lam=0.9, horizon=24).fit(frame, y)
    one = frame.loc[frame["asset"] == frame["asset"].iloc[0]]
    r = one["ret_1h"].to_numpy()
    s2 = np.nan
    seen = 0
    expected = []
    for value in r:
        if np.isfinite(value):
            s2 = value**2 if np.isnan(s2) else 0.9 * s2 + 0.1 * value**2
            seen += 1
        # ceil(1 / (1 - 0.9)) = 10 finite returns warm the recursion up before it forecasts.
        expected.append(24 * s2 if seen >= 10 else np.nan)
    predicted = model.predict(one)
    assert np.isnan(predicted[: np.argmax(np.isfinite(r).cumsum() >= 10)]).all()
    np.testing.assert_allclose(predicted, np.maximum(expected, 1e-12), rtol=1e-10)


def test_ewma_gives_no_forecast_for_a_newly_listed_asset_before_its_warm_up() -> None:
    ts = pd.date_range("2022-01-01", periods=40, freq="h", tz="UTC")
    # A calm first hour used to seed the recursion with a near-zero variance.
    returns = np.r_[1e-7, np.full(39, 0.01)]
    frame = pd.DataFrame({"ts": ts, "asset": "NEWUSDT", "ret_1h": returns})
    model = EWMAForecaster(lam=0.94, horizon=24).fit(frame, np.full(40, 24e-4))
    predicted = model.predict(frame)
    assert np.isnan(predicted[:16]).all()
    assert np.isfinite(predicted[16:]).all()
    assert predicted[16] > 0.5 * 24e-4


def test_estimated_ewma_picks_a_decay_from_its_grid(synthetic_features: pd.DataFrame) -> None:
    frame, y = _panel(synthetic_features)
    ok = np.isfinite(y)
    model = build_estimator(named_spec("ewma"), "1h").fit(frame.loc[ok], y[ok])
    assert model.lam_ in model.grid and len(model.scores_) == len(model.grid)


def test_har_recovers_known_log_coefficients() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    logs = rng.normal(-7, 0.7, size=(n, 3))
    beta = np.array([-0.5, 0.4, 0.3, 0.2])
    log_y = beta[0] + logs @ beta[1:] + rng.normal(0, 0.3, n)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    X = pd.DataFrame({"ts": ts, "asset": "A", "har_d": 0.0, "har_w": 0.0, "har_m": 0.0})
    X[["har_d", "har_w", "har_m"]] = np.exp(logs)
    model = HARForecaster().fit(X, np.exp(log_y))
    np.testing.assert_allclose(model.coef_["A"][1:], beta[1:], atol=0.03)
    # The intercept is estimated far from the data's centre (log RV ~ -7): looser.
    assert model.coef_["A"][0] == pytest.approx(beta[0], abs=0.3)
    # Log-normal bias correction: exp(s^2 / 2) with s ~ 0.3.
    assert model.correction_["A"] == pytest.approx(np.exp(0.045), rel=0.02)


def test_harq_needs_quarticity() -> None:
    X = pd.DataFrame({"ts": [], "asset": [], "har_d": [], "har_w": [], "har_m": []})
    with pytest.raises(ForecasterInputError, match="rq_24h"):
        build_estimator(named_spec("harq"), "1h").fit(X, np.array([]))


def test_garch_horizon_sum_matches_arch_analytic_forecast() -> None:
    from arch import arch_model

    rng = np.random.default_rng(1)
    ret = rng.standard_t(6, size=3000) * 0.01
    params = {"omega": 2e-6, "alpha": 0.08, "gamma": 0.0, "beta": 0.9, "nu": 6.0}
    model = GARCHForecaster(horizon=5)
    ours = model._horizon_variance(ret, params)
    fixed = arch_model(ret * 100, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fix(
        [params["omega"] * 1e4, params["alpha"], params["beta"], params["nu"]]
    )
    theirs = fixed.forecast(horizon=5, start=2000, reindex=False).variance.sum(axis=1) / 1e4
    # arch seeds its recursion with the sample variance, we with the long-run level: the
    # difference decays as beta^t and is gone after 2000 bars.
    np.testing.assert_allclose(ours[2000:], theirs.to_numpy(), rtol=1e-6)


def test_garch_fits_per_asset_and_forecasts_positive_variance(
    synthetic_features: pd.DataFrame,
) -> None:
    frame, y = _panel(synthetic_features)
    model = build_estimator(named_spec("gjr"), "1h").fit(frame, y)
    assert set(model.params_) == set(frame["asset"].astype(str))
    out = model.predict(frame)
    assert out.shape == (len(frame),) and np.all(out > 0)
