"""The Forecast contract: what :mod:`models` writes and :mod:`serving` and the replay read.

One row per ``(ts, asset, model)``. ``ts`` is the UTC open of the bar at whose close
(``ts + interval``) the forecast is made; it covers the next ``H`` bars.

* ``sigma``: standard deviation of the ``H``-bar log return (``sqrt`` of the forecast
  variance); ``sigma_lower``/``sigma_upper``: the conformal interval of realized volatility.
* ``var_99``/``es_99``: 99% VaR and ES of a long position as positive loss fractions of
  notional.
* ``model``/``model_version``: provenance.

Invariants (:func:`validate_forecasts`): tz-aware UTC ``ts``; one row per key; a finite
``sigma`` is positive; finite bounds bracket ``sigma``; ``0 <= var_99 <= es_99 < 1``. A
missing ``sigma`` (NaN) is allowed: the policy turns it into a fallback with its reason,
rather than an asset silently disappearing. Missing bounds or VaR/ES (no calibration) are
allowed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from contracts.errors import ForecastContractError

FORECAST_COLUMNS: Final[tuple[str, ...]] = (
    "ts",
    "asset",
    "sigma",
    "sigma_lower",
    "sigma_upper",
    "var_99",
    "es_99",
    "model",
    "model_version",
)
"""Columns of a Forecast frame, in order."""

FORECAST_KEY: Final[tuple[str, str, str]] = ("ts", "asset", "model")
"""One forecast per key."""

CALIBRATED_COLUMNS: Final[tuple[str, ...]] = (
    "sigma",
    "sigma_lower",
    "sigma_upper",
    "var_99",
    "es_99",
)
"""The numeric columns a calibrated forecaster produces."""


def validate_forecasts(frame: pd.DataFrame, source: str = "forecast frame") -> pd.DataFrame:
    """Check ``frame`` against the Forecast contract; return it sorted by ``model, asset, ts``.

    Parameters
    ----------
    frame
        A frame with at least :data:`FORECAST_COLUMNS` (extra columns are kept).
    source
        Named in error messages (e.g. the file or step the frame came from).

    Raises
    ------
    ForecastContractError
        Naming the source, asset, time and model of the first offending row: a missing
        column, a naive ``ts``, a duplicated key, ``sigma <= 0``, bounds that do not bracket
        ``sigma``, or VaR/ES outside ``0 <= var_99 <= es_99 < 1``.
    """
    missing = [c for c in FORECAST_COLUMNS if c not in frame.columns]
    if missing:
        raise ForecastContractError(
            f"{source} lacks Forecast columns {missing}; expected {list(FORECAST_COLUMNS)}"
        )
    out = frame.copy()
    ts = pd.to_datetime(out["ts"])
    if ts.dt.tz is None:
        raise ForecastContractError(f"{source}: column ts must be tz-aware UTC")
    out["ts"] = ts.dt.tz_convert("UTC")
    out["asset"] = out["asset"].astype(str)
    duplicated = out.duplicated(list(FORECAST_KEY), keep=False)
    if duplicated.any():
        row = out[duplicated].iloc[0]
        raise ForecastContractError(
            f"{source}: duplicated forecast for {row['asset']} at {row['ts']} "
            f"(model {row['model']}); keep one per key"
        )
    values = {c: out[c].to_numpy(dtype="float64") for c in CALIBRATED_COLUMNS}
    finite = {c: np.isfinite(v) for c, v in values.items()}
    sigma, lower, upper = values["sigma"], values["sigma_lower"], values["sigma_upper"]
    var, es = values["var_99"], values["es_99"]
    with np.errstate(invalid="ignore"):
        rules = {
            "sigma > 0": finite["sigma"] & ~(sigma > 0),
            "sigma_lower <= sigma <= sigma_upper (the conformal bounds do not bracket sigma)": (
                finite["sigma"]
                & finite["sigma_lower"]
                & finite["sigma_upper"]
                & ~((lower <= sigma) & (sigma <= upper))
            ),
            "0 <= var_99 < 1": finite["var_99"] & ~((var >= 0) & (var < 1)),
            "var_99 <= es_99 < 1": (finite["var_99"] & finite["es_99"] & ~((es >= var) & (es < 1))),
        }
    for rule, bad in rules.items():
        if bad.any():
            row = out.loc[bad].iloc[0]
            raise ForecastContractError(
                f"{source}: forecast breaks {rule} for asset {row['asset']} at {row['ts']} "
                f"(model {row['model']}); check the calibration step"
            )
    return out.sort_values(["model", "asset", "ts"], kind="stable").reset_index(drop=True)


def forecast_frame(frame: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """The contract columns of a walk-forward output frame, with a version stamped on.

    Parameters
    ----------
    frame
        Long frame with at least ``ts, asset, model, sigma, sigma_lower, sigma_upper,
        var_99, es_99`` (e.g. the forecasts of :func:`models.walkforward.run_evaluation`).
    model_version
        Version tag stamped on every row (e.g. the registry version or a config hash).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FORECAST_COLUMNS`, rows with a finite ``sigma`` only, sorted by
        ``model, asset, ts``.
    """
    out = frame.copy()
    out["model_version"] = model_version
    missing = [c for c in FORECAST_COLUMNS if c not in out.columns]
    if missing:
        raise ForecastContractError(f"forecast frame lacks columns {missing}")
    out = out.loc[np.isfinite(out["sigma"].to_numpy(dtype="float64")), list(FORECAST_COLUMNS)]
    return validate_forecasts(out)


def empty_forecasts() -> pd.DataFrame:
    """A Forecast frame with no rows (every asset then gets the policy's fallback)."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in FORECAST_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    for column in ("asset", "model", "model_version"):
        frame[column] = pd.Series(dtype="object")
    return frame[list(FORECAST_COLUMNS)]


@dataclass(frozen=True)
class ProvenanceInfo:
    """Where a batch of forecasts came from; model name/version default to the forecast columns.

    Attributes
    ----------
    model_name, model_version
        Override the forecast's ``model`` / ``model_version`` columns (e.g. the registry's
        champion name and version).
    mlflow_run_id
        MLflow run that produced the model.
    feature_set_hash
        Hash of the feature set definition (``sha256:...``).
    """

    model_name: str | None = None
    model_version: str | None = None
    mlflow_run_id: str | None = None
    feature_set_hash: str | None = None
