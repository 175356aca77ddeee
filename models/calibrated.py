"""A variance estimator plus its conformal calibration: the forecaster the registry stores.

:class:`CalibratedForecaster` owns :mod:`models.conformal`. It is a scikit-learn estimator
(``get_params``/``clone`` work; fitted state ends in ``_``):

* ``fit(X, y)`` fits a clone of the estimator part on forward variances;
* ``predict(X)`` returns the variance forecast (what MLflow's signature describes);
* ``calibrate_on(oos)`` calibrates VaR, ES and the sigma interval on the forecaster's own
  out-of-sample forecasts whose outcomes are known (never on in-sample fits);
* ``forecast(X, version)`` returns a Forecast-contract frame (:mod:`contracts.forecast`).

:func:`calibrate_walk_forward` is the same calibration applied fold by fold during a
walk-forward: at each refit on a rolling window of known scores, and, for
``kind="adaptive"``, with adaptive conformal inference between refits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone

from contracts.forecast import CALIBRATED_COLUMNS, FORECAST_COLUMNS, validate_forecasts
from features.bars import interval_to_timedelta
from models.conformal import (
    CalibrationError,
    ConformalCalibration,
    adaptive_var,
    calibrate,
    calibration_window,
)
from models.estimators.base import ForecasterInputError, VarianceForecaster
from models.spec import CalibrationSpec
from models.splitter import Fold


class CalibratedForecaster(RegressorMixin, BaseEstimator):
    """A variance estimator with its conformal calibration.

    Parameters
    ----------
    estimator
        The estimator part (:class:`~models.estimators.base.VarianceForecaster`).
    calibration
        The calibration part.
    name
        The forecaster's label in the ``model`` column of its forecasts.

    Examples
    --------
    >>> from models.factory import build_forecaster
    >>> from models.spec import named_spec
    >>> f = build_forecaster(named_spec("ewma"), "1h")
    >>> sorted(f.get_params(deep=False))
    ['calibration', 'estimator', 'name']
    """

    def __init__(
        self,
        estimator: VarianceForecaster,
        calibration: CalibrationSpec | None = None,
        name: str = "forecaster",
    ) -> None:
        self.estimator = estimator
        self.calibration = calibration
        self.name = name

    # -- capabilities -----------------------------------------------------------------------

    def get_tag(self, tag: str) -> Any:
        """A capability tag of the estimator part (:data:`~models.estimators.base.DEFAULT_TAGS`)."""
        return self.estimator.get_tag(tag)

    @property
    def feature_names_(self) -> list[str]:
        """Columns the fitted estimator reads (its declared ones, or those it selected)."""
        fitted = self._fitted()
        return list(getattr(fitted, "feature_names_", None) or fitted.required_columns)

    @property
    def feature_importances_(self) -> pd.Series | None:
        """Importance per input column, largest first, when the estimator has the tag."""
        if not self.get_tag("feature_importance"):
            return None
        return self._fitted().feature_importances_

    # -- estimator contract -----------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any) -> CalibratedForecaster:
        """Fit a clone of the estimator part; any previous calibration is dropped."""
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.calibration_: ConformalCalibration | None = None
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Forecast variance of the next ``H`` bars for every row of ``X``."""
        return self._fitted().predict(X)

    # -- calibration ------------------------------------------------------------------------

    def calibrate_on(self, oos: pd.DataFrame) -> CalibratedForecaster:
        """Calibrate on out-of-sample forecasts: the last ``window_days`` of ``oos``.

        Parameters
        ----------
        oos
            This forecaster's out-of-sample forecasts whose outcomes are known: columns
            ``ts``, ``variance``, ``rv`` (realized forward variance) and ``ret_fwd``.

        Raises
        ------
        CalibrationError
            If too few usable scores remain in the window.
        """
        spec = self._spec()
        self._fitted()
        self._variance_only("calibrate_on")
        if spec.kind == "none":
            self.calibration_ = None
            return self
        recent = oos.loc[oos["ts"] >= oos["ts"].max() - pd.Timedelta(days=spec.window_days)]
        self.calibration_ = calibrate(
            recent["variance"],
            recent["rv"],
            recent["ret_fwd"],
            alpha=spec.alpha,
            coverage=spec.coverage,
            min_scores=spec.min_scores,
        )
        return self

    def forecast(self, X: pd.DataFrame, model_version: str) -> pd.DataFrame:
        """Forecast-contract rows for ``X``: sigma, its interval, VaR and ES.

        Rows whose variance forecast is not finite keep NaN, so the policy reports them
        as missing forecasts rather than inventing a value.
        """
        self._variance_only("forecast")
        if self._spec().kind != "none" and getattr(self, "calibration_", None) is None:
            raise ForecasterInputError(
                f"forecaster {self.name!r} is not calibrated; call calibrate_on first"
            )
        variance = np.asarray(self.predict(X), dtype="float64")
        finite = np.isfinite(variance) & (variance > 0)
        frame = pd.DataFrame(
            {
                "ts": pd.to_datetime(X["ts"].to_numpy(), utc=True),
                "asset": X["asset"].astype(str).to_numpy(),
            }
        )
        values = _apply(self.calibration_, np.where(finite, variance, 1.0))
        for column in CALIBRATED_COLUMNS:
            frame[column] = np.where(finite, values[column].to_numpy(), np.nan)
        frame["model"] = self.name
        frame["model_version"] = str(model_version)
        validate_forecasts(frame, source=f"forecaster {self.name!r}")
        return frame[list(FORECAST_COLUMNS)]

    # -- helpers ----------------------------------------------------------------------------

    def _variance_only(self, what: str) -> None:
        if self.get_tag("quantile_forecast"):
            raise ForecasterInputError(
                f"forecaster {self.name!r} forecasts a tail quantile, not a variance: {what} "
                "is for variance forecasts; calibrate it with models.tails.calibrate_quantiles"
            )

    def _spec(self) -> CalibrationSpec:
        return self.calibration or CalibrationSpec()

    def _fitted(self) -> VarianceForecaster:
        if not hasattr(self, "estimator_"):
            raise ForecasterInputError(f"forecaster {self.name!r} is not fitted; call fit first")
        return self.estimator_


def calibrate_walk_forward(
    preds: pd.DataFrame,
    spec: CalibrationSpec,
    folds: Sequence[Fold],
    horizon: int,
    interval: str,
) -> pd.DataFrame:
    """Attach conformal sigma bounds, VaR and ES to walk-forward forecasts, fold by fold.

    Each fold is calibrated on the earlier out-of-sample forecasts whose outcomes are known
    at the fold's start, within ``spec.window_days``; a fold without enough of them (the
    first warm-up fold) stays uncalibrated and is never scored. With ``kind="adaptive"`` the
    VaR and ES then follow adaptive conformal inference asset by asset.

    Parameters
    ----------
    preds
        Frame ``ts, asset, variance, rv, ret_fwd`` of one forecaster.
    spec
        The calibration part.
    folds
        The walk-forward folds the forecasts came from.
    horizon, interval
        Target window in bars and bar interval (when an outcome becomes known).

    Returns
    -------
    pandas.DataFrame
        ``preds`` plus ``sigma, sigma_lower, sigma_upper, var_99, es_99``.
    """
    step = interval_to_timedelta(interval)
    out = preds.copy()
    for column in CALIBRATED_COLUMNS:
        out[column] = np.nan
    out["sigma"] = np.sqrt(out["variance"])
    if spec.kind == "none":
        return out
    fold_of = np.full(len(out), -1)
    calibrations: list[ConformalCalibration] = []
    for fold in folds:
        rows = (out["ts"] >= fold.test_start) & (out["ts"] < fold.test_end)
        if not rows.any():
            continue
        usable = calibration_window(out["ts"], fold.test_start, horizon, step, spec.window_days)
        try:
            calibration = calibrate(
                out.loc[usable, "variance"],
                out.loc[usable, "rv"],
                out.loc[usable, "ret_fwd"],
                alpha=spec.alpha,
                coverage=spec.coverage,
                min_scores=spec.min_scores,
            )
        except CalibrationError:
            # Only the first warm-up fold lacks history; it is never scored.
            continue
        applied = calibration.apply(out.loc[rows, "variance"].to_numpy())
        for column in CALIBRATED_COLUMNS:
            out.loc[rows, column] = applied[column].to_numpy()
        fold_of[rows.to_numpy()] = len(calibrations)
        calibrations.append(calibration)
    if spec.kind == "adaptive" and spec.gamma > 0 and calibrations:
        _adapt_var(out, fold_of, calibrations, spec, horizon, step)
    return out


def _adapt_var(
    out: pd.DataFrame,
    fold_of: np.ndarray,
    calibrations: list[ConformalCalibration],
    spec: CalibrationSpec,
    horizon: int,
    step: pd.Timedelta,
) -> None:
    """Replace split-conformal VaR/ES by adaptive conformal inference, asset by asset."""
    with np.errstate(divide="ignore", invalid="ignore"):
        realized = -out["ret_fwd"].to_numpy() / out["sigma"].to_numpy()
    for _asset, block in out.loc[fold_of >= 0].groupby("asset", sort=False):
        block = block.sort_values("ts")
        rows = block.index.to_numpy()
        adapted = adaptive_var(
            block["ts"],
            block["sigma"].to_numpy(),
            realized[rows],
            fold_of[rows],
            calibrations,
            horizon,
            step,
            alpha=spec.alpha,
            gamma=spec.gamma,
        )
        out.loc[rows, "var_99"] = adapted["var_99"].to_numpy()
        out.loc[rows, "es_99"] = adapted["es_99"].to_numpy()


def _apply(calibration: ConformalCalibration | None, variance: np.ndarray) -> pd.DataFrame:
    if calibration is not None:
        return calibration.apply(variance)
    sigma = np.sqrt(variance)
    missing = np.full(len(sigma), np.nan)
    return pd.DataFrame(
        {
            "sigma": sigma,
            "sigma_lower": missing,
            "sigma_upper": missing,
            "var_99": missing,
            "es_99": missing,
        }
    )
