"""The Forecast contract (DESIGN.md) as a DataFrame, consumed by publish and replay.

One row per ``(ts, asset, model)``: ``ts`` is the UTC open of the bar at whose close
(``ts + interval``) the forecast is made; it covers the next ``H`` bars.

* ``sigma``: standard deviation of the ``H``-bar log return (``sqrt`` of the forecast
  variance); ``sigma_lower``/``sigma_upper``: the conformal interval of realized volatility.
* ``var_99``/``es_99``: 99% VaR and ES of a long position as positive loss fractions of
  notional.
* ``model``/``model_version``: provenance.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

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


class ForecastContractError(ValueError):
    """A frame does not satisfy the Forecast contract."""


def to_forecast_frame(frame: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """Select and check the Forecast contract columns from a walk-forward output frame.

    Parameters
    ----------
    frame
        Long frame with at least ``ts, asset, model, sigma, sigma_lower, sigma_upper,
        var_99, es_99`` (e.g. :attr:`models.walkforward.EvaluationResult.forecasts`).
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
    out = out.sort_values(["model", "asset", "ts"], kind="stable").reset_index(drop=True)
    validate_forecast_frame(out)
    return out


def validate_forecast_frame(frame: pd.DataFrame) -> None:
    """Check the invariants of a Forecast frame.

    Raises
    ------
    ForecastContractError
        Naming the first offending row, if ``sigma <= 0``, the bounds do not bracket
        ``sigma``, VaR/ES are not in ``[0, 1]`` or ``es_99 < var_99``.
    """
    missing = [c for c in FORECAST_COLUMNS if c not in frame.columns]
    if missing:
        raise ForecastContractError(f"forecast frame lacks columns {missing}")
    checks = {
        "sigma > 0": frame["sigma"] > 0,
        "sigma_lower <= sigma <= sigma_upper": (frame["sigma_lower"] <= frame["sigma"])
        & (frame["sigma"] <= frame["sigma_upper"]),
        "0 <= var_99 < 1": (frame["var_99"] >= 0) & (frame["var_99"] < 1),
        "var_99 <= es_99 < 1": (frame["es_99"] >= frame["var_99"]) & (frame["es_99"] < 1),
    }
    for rule, ok in checks.items():
        # NaN bounds (no calibration yet) are allowed; a finite wrong value is not.
        bad = ~ok.fillna(False) & frame[["sigma", "var_99", "es_99"]].notna().all(axis=1)
        if rule != "sigma > 0":
            bad &= frame[["sigma_lower", "sigma_upper", "var_99", "es_99"]].notna().all(axis=1)
        if bad.any():
            row = frame.loc[bad].iloc[0]
            raise ForecastContractError(
                f"forecast breaks {rule} for asset {row['asset']} at {row['ts']} "
                f"(model {row['model']})"
            )
