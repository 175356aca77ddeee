"""Quantile forecasters of the largest adverse move over a holding horizon.

Both forecast the ``level`` quantile of an ``adverse_move`` target
(:func:`models.targets.forward_adverse_move`) and work on the **volatility-scaled** move
``z = y / s``, with the point-in-time scale

``s = sqrt(mean(har_d, har_w, har_m) * H * interval / 24 h)``

(an equal-weight HAR average of the daily, weekly and monthly realized variance per day,
stretched to the horizon). A quantile is equivariant under a known positive scale, so
``q(y | x) = s * q(z | x)``: scaling makes moves of assets and regimes with different
volatility comparable, and the forecaster only has to learn the shape of the tail.

* :class:`ScaledQuantileForecaster` (the baseline): the empirical ``level`` quantile of
  ``z`` per asset (or pooled) on the training rows, times ``s``; filtered historical
  simulation with a HAR filter.
* :class:`QuantileGBMForecaster`: pooled LightGBM with the quantile (pinball) objective on
  ``z`` and the catalog's features, early-stopped on a purged holdout.

Neither is calibrated here; :func:`models.tails.calibrate_quantiles` applies adaptive
conformal calibration per asset on the forecaster's own out-of-sample forecasts.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from models.estimators.base import ForecasterInputError, VarianceForecaster
from models.estimators.gbm import GBMForecaster, _early_stopping, _eval_arguments, _stride_mask
from models.spec import HAR_COLUMNS
from models.splitter import purged_holdout


def volatility_scale(X: pd.DataFrame, horizon: int, interval: str) -> np.ndarray:
    """The point-in-time scale ``s`` of an ``H``-bar move for every row of ``X``.

    Parameters
    ----------
    X
        Feature rows with the HAR columns ``har_d, har_w, har_m`` (variance per 24 h).
    horizon, interval
        Bars of the move and the bar interval.

    Returns
    -------
    numpy.ndarray
        ``sqrt(mean(har_d, har_w, har_m) * H * interval / 24 h)``; NaN where a HAR column
        is missing or not positive.
    """
    missing = [c for c in HAR_COLUMNS if c not in X.columns]
    if missing:
        raise ForecasterInputError(f"the volatility scale needs the HAR columns; X lacks {missing}")
    days = horizon * interval_to_timedelta(interval) / pd.Timedelta(hours=24)
    har = X[list(HAR_COLUMNS)].to_numpy(dtype="float64")
    mean = har.mean(axis=1)
    with np.errstate(invalid="ignore"):
        scale = np.sqrt(mean * days)
    return np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)


MIN_ROWS_PER_ASSET: Final[int] = 100
"""Usable training rows an asset needs for its own empirical quantile."""


class ScaledQuantileForecaster(VarianceForecaster):
    """Empirical quantile of the volatility-scaled adverse move, times today's scale.

    Parameters
    ----------
    horizon, interval
        Bars of the move and the bar interval (size the scale).
    level
        Quantile forecast, e.g. 0.99.
    pooled
        One quantile across assets instead of one per asset.

    Examples
    --------
    >>> ScaledQuantileForecaster(level=0.99).get_params()["level"]
    0.99
    """

    _tags: ClassVar[dict[str, Any]] = {
        "quantile_forecast": True,
        "min_rows_per_asset": MIN_ROWS_PER_ASSET,
    }

    def __init__(
        self, horizon: int = 24, interval: str = "1h", level: float = 0.99, pooled: bool = False
    ) -> None:
        self.horizon = horizon
        self.interval = interval
        self.level = level
        self.pooled = pooled

    @property
    def required_columns(self) -> tuple[str, ...]:
        return HAR_COLUMNS

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        z = y / volatility_scale(X, self.horizon, self.interval)
        keys = self._keys(X)
        ok = np.isfinite(z) & (z >= 0)
        self.quantile_: dict[str, float] = {}
        for key in np.unique(keys[ok]):
            values = np.sort(z[ok & (keys == key)])
            if values.size < MIN_ROWS_PER_ASSET:
                raise ForecasterInputError(
                    f"scaled quantile: only {values.size} usable training rows for {key}"
                )
            # The conformal rank: a finite-sample upper quantile (never below the level).
            rank = min(math.ceil((values.size + 1) * self.level), values.size)
            self.quantile_[str(key)] = float(values[rank - 1])

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        scale = volatility_scale(X, self.horizon, self.interval)
        keys = self._keys(X)
        unknown = sorted({str(k) for k in keys} - set(self.quantile_))
        if unknown:
            raise ForecasterInputError(f"scaled quantile was not fitted on assets {unknown}")
        return scale * np.array([self.quantile_[str(k)] for k in keys])

    def _keys(self, X: pd.DataFrame) -> np.ndarray:
        if self.pooled:
            return np.full(len(X), "__pooled__", dtype=object)
        return X["asset"].astype(str).to_numpy(dtype=object)


class QuantileGBMForecaster(GBMForecaster):
    """Pooled LightGBM quantile regression of the volatility-scaled adverse move.

    Parameters
    ----------
    level
        Quantile forecast (LightGBM's ``alpha`` of the quantile objective).
    horizon, interval, features, n_estimators, learning_rate, num_leaves,
    min_child_samples, subsample, colsample, max_bin, reg_lambda, early_stopping_rounds,
    validation_fraction, row_stride, asset_code, n_jobs, random_state
        As in :class:`~models.estimators.gbm.GBMForecaster`.

    Examples
    --------
    >>> QuantileGBMForecaster(level=0.95).get_params()["level"]
    0.95
    """

    _tags: ClassVar[dict[str, Any]] = {"quantile_forecast": True}

    def __init__(
        self,
        level: float = 0.99,
        horizon: int = 24,
        interval: str = "1h",
        features: tuple[str, ...] | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 200,
        subsample: float = 0.8,
        colsample: float = 0.5,
        max_bin: int = 63,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 50,
        validation_fraction: float = 0.15,
        row_stride: int = 2,
        asset_code: bool = True,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            horizon=horizon,
            interval=interval,
            objective="qlike",
            features=features,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            subsample=subsample,
            colsample=colsample,
            max_bin=max_bin,
            reg_lambda=reg_lambda,
            early_stopping_rounds=early_stopping_rounds,
            validation_fraction=validation_fraction,
            row_stride=row_stride,
            asset_code=asset_code,
            n_jobs=n_jobs,
            random_state=random_state,
        )
        self.level = level

    @property
    def required_columns(self) -> tuple[str, ...]:
        return HAR_COLUMNS

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        z = y / volatility_scale(X, self.horizon, self.interval)
        # A zero move is a real outcome of the tail target (it must stay in the fit).
        keep = np.isfinite(z) & (z >= 0) & _stride_mask(X, self.row_stride)
        X, z = X.loc[keep].reset_index(drop=True), z[keep]
        if len(X) < 1000:
            raise ForecasterInputError(
                f"quantile GBM: only {len(X)} usable training rows; need >= 1000"
            )
        self.feature_names_ = self._select_features(X)
        self.assets_ = sorted(X["asset"].astype(str).unique().tolist())
        design = self._design(X)
        best = self.n_estimators
        if self.early_stopping_rounds > 0:
            step = interval_to_timedelta(self.interval)
            fit_rows, val_rows = purged_holdout(
                X["ts"], self.validation_fraction, self.horizon * step, step
            )
            probe = self._quantile_booster(self.n_estimators)
            probe.fit(
                design.iloc[fit_rows],
                z[fit_rows],
                callbacks=[_early_stopping(self.early_stopping_rounds)],
                **_eval_arguments(design.iloc[val_rows], z[val_rows]),
            )
            best = max(int(probe.best_iteration_ or self.n_estimators), 10)
        self.booster_ = self._quantile_booster(best).fit(design, z)
        self.best_iteration_ = best
        gains = self.booster_.booster_.feature_importance(importance_type="gain")
        self.feature_importances_ = pd.Series(gains, index=design.columns).sort_values(
            ascending=False
        )

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        z = np.asarray(self.booster_.predict(self._design(X)), dtype="float64")
        return volatility_scale(X, self.horizon, self.interval) * np.maximum(z, 0.0)

    def _quantile_booster(self, n_estimators: int) -> Any:
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            objective="quantile",
            alpha=self.level,
            n_estimators=n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1,
            colsample_bytree=self.colsample,
            max_bin=self.max_bin,
            reg_lambda=self.reg_lambda,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
