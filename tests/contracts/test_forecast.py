import numpy as np
import pandas as pd
import pytest

from contracts.errors import ForecastContractError
from contracts.forecast import (
    FORECAST_COLUMNS,
    empty_forecasts,
    forecast_frame,
    validate_forecasts,
)


def _frame(n: int = 4) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    sigma = np.linspace(0.02, 0.03, n)
    return pd.DataFrame(
        {
            "ts": list(ts) * 2,
            "asset": ["ETHUSDT"] * n + ["BTCUSDT"] * n,
            "sigma": np.r_[sigma, sigma],
            "sigma_lower": np.r_[sigma, sigma] * 0.8,
            "sigma_upper": np.r_[sigma, sigma] * 1.3,
            "var_99": np.r_[sigma, sigma] * 2.4,
            "es_99": np.r_[sigma, sigma] * 2.8,
            "model": "lgbm",
            "model_version": "1",
        }
    )


def test_a_valid_frame_comes_back_sorted_by_model_asset_ts():
    out = validate_forecasts(_frame().sample(frac=1, random_state=3))
    assert list(out["asset"])[:4] == ["BTCUSDT"] * 4
    assert out.groupby("asset")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="es_99"), "lacks Forecast columns"),
        (lambda f: f.assign(ts=f["ts"].dt.tz_localize(None)), "tz-aware"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicated forecast for ETHUSDT"),
        (lambda f: f.assign(sigma=-f["sigma"]), r"sigma > 0 for asset ETHUSDT"),
        (lambda f: f.assign(sigma_upper=f["sigma"] * 0.9), "do not bracket"),
        (lambda f: f.assign(var_99=1.5, es_99=1.6), r"0 <= var_99 < 1"),
        (lambda f: f.assign(es_99=f["var_99"] * 0.5), r"var_99 <= es_99"),
    ],
)
def test_each_broken_rule_is_named(change, message):
    with pytest.raises(ForecastContractError, match=message):
        validate_forecasts(change(_frame()))


def test_missing_values_are_allowed_and_kept():
    frame = _frame()
    frame.loc[0, "sigma"] = np.nan
    frame.loc[1, ["sigma_lower", "sigma_upper", "var_99", "es_99"]] = np.nan
    assert validate_forecasts(frame)["sigma"].isna().sum() == 1


def test_forecast_frame_keeps_finite_sigma_and_the_contract_columns():
    frame = _frame().assign(variance=1.0, rv=2.0)
    frame.loc[0, "sigma"] = np.nan
    out = forecast_frame(frame, "v7")
    assert tuple(out.columns) == FORECAST_COLUMNS
    assert len(out) == len(frame) - 1 and set(out["model_version"]) == {"v7"}
    assert validate_forecasts(empty_forecasts()).empty
