"""Pooled LightGBM forecaster of forward realized variance.

One model across all assets. Each row's features are the point-in-time feature columns,
a few scale-free ratios built here (the tree cannot form ratios of two columns on its own,
and ratios make assets with different volatility levels comparable), and the asset as a
categorical feature. Two objectives, both on the log scale of the variance:

* ``"qlike"``: LightGBM's gamma deviance with a log link. Its loss per row,
  ``y exp(-f) + f``, equals QLIKE up to terms free of ``f``: the tree directly minimises
  the evaluation loss and its output ``exp(f)`` is a mean (not a median) forecast.
* ``"log_l2"``: least squares on ``log y``; the level needs a bias correction, estimated
  by smearing on the purged validation slice.
* ``"blend"``: both, averaged in logs (a geometric mean of the two variance forecasts).

The defaults (``"blend"``, ``row_stride=2``, 63 bins, 31 leaves, all feature columns) were
chosen by walk-forward on 2023-07..2024-06, before the public test period; they are not
tuned on it.

Early stopping uses the last part of the training period, purged exactly like a test
block (:func:`models.splitter.purged_holdout`); the model is then refit on
all training rows with the chosen number of trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from models.estimators.base import ForecasterInputError, VarianceForecaster
from models.splitter import purged_holdout
from models.targets import TARGET_VALUE_COLUMNS

GBMObjective = Literal["qlike", "log_l2", "blend"]

EXCLUDED_COLUMNS: frozenset[str] = frozenset({"ts", "asset", *TARGET_VALUE_COLUMNS})
"""Frame columns never used as features: keys and the forward targets."""

RATIO_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("lr_d_m", "har_d", "har_m"),
    ("lr_w_m", "har_w", "har_m"),
    ("lr_d_w", "har_d", "har_w"),
)
"""Log ratios ``(name, numerator, denominator)`` added when both columns exist."""


class GBMForecaster(VarianceForecaster):
    """Pooled LightGBM forecaster of the ``H``-bar forward realized variance.

    Parameters
    ----------
    horizon, interval
        Target window in bars and bar interval (for the purge of the validation slice).
    objective
        ``"qlike"`` (gamma deviance, log link), ``"log_l2"`` (squared error on log RV) or
        ``"blend"`` (both, geometric mean).
    features
        Feature columns to use; ``None`` for every numeric column of ``X`` except keys.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample, max_bin
        LightGBM tree parameters.
    reg_lambda
        L2 penalty on leaf values.
    early_stopping_rounds
        Patience on the purged validation slice; 0 disables early stopping.
    validation_fraction
        Share of the training span (the most recent part) used for early stopping.
    row_stride
        Keep every ``row_stride``-th hour per asset when fitting; neighbouring hours share
        23 of 24 target bars, so striding costs little information and saves time.
    asset_code
        Add the asset as a categorical feature (lets the pooled model learn per-asset
        levels; off, the model is asset-agnostic and generalises to new listings).
    n_jobs
        LightGBM threads. One by default: on a shared, oversubscribed machine OpenMP
        threads spin-wait and two threads measured ten times slower than one.
    random_state
        Seed.

    Examples
    --------
    >>> GBMForecaster(n_jobs=1).get_params()["objective"]
    'blend'
    """

    _tags: ClassVar[dict[str, Any]] = {"feature_importance": True}

    def __init__(
        self,
        horizon: int = 24,
        interval: str = "1h",
        objective: GBMObjective = "blend",
        features: tuple[str, ...] | None = None,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
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
        self.horizon = horizon
        self.interval = interval
        self.objective = objective
        self.features = features
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample = colsample
        self.max_bin = max_bin
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.row_stride = row_stride
        self.asset_code = asset_code
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- contract ---------------------------------------------------------------------------

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        if self.objective not in ("qlike", "log_l2", "blend"):
            raise ForecasterInputError(f"unknown GBM objective {self.objective!r}")
        keep = np.isfinite(y) & (y > 0)
        keep &= _stride_mask(X, self.row_stride)
        X, y = X.loc[keep].reset_index(drop=True), y[keep]
        if len(X) < 1000:
            raise ForecasterInputError(f"GBM: only {len(X)} usable training rows; need >= 1000")
        self.feature_names_ = self._select_features(X)
        self.assets_ = sorted(X["asset"].astype(str).unique().tolist())
        design = self._design(X)
        objectives = ("qlike", "log_l2") if self.objective == "blend" else (self.objective,)
        self.members_ = [self._fit_member(design, X["ts"], y, obj) for obj in objectives]
        self.best_iteration_ = int(np.mean([m.best_iteration for m in self.members_]))
        gains = sum(
            m.booster.booster_.feature_importance(importance_type="gain") for m in self.members_
        )
        self.feature_importances_ = pd.Series(gains, index=design.columns).sort_values(
            ascending=False
        )

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        design = self._design(X)
        # A blend averages the members in logs (a geometric mean of variance forecasts).
        logs = [np.log(np.maximum(m.predict(design), 1e-300)) for m in self.members_]
        return np.exp(np.mean(logs, axis=0))

    def _fit_member(
        self, design: pd.DataFrame, ts: pd.Series, y: np.ndarray, objective: str
    ) -> _Member:
        target = y if objective == "qlike" else np.log(y)
        best = self.n_estimators
        smearing = 1.0
        if self.early_stopping_rounds > 0:
            step = interval_to_timedelta(self.interval)
            fit_rows, val_rows = purged_holdout(
                ts, self.validation_fraction, self.horizon * step, step
            )
            probe = self._booster(self.n_estimators, objective)
            probe.fit(
                design.iloc[fit_rows],
                target[fit_rows],
                callbacks=[_early_stopping(self.early_stopping_rounds)],
                **_eval_arguments(design.iloc[val_rows], target[val_rows]),
            )
            best = max(int(probe.best_iteration_ or self.n_estimators), 10)
            if objective == "log_l2":
                # Smearing (Duan 1983): the mean of exp(residual) on the unseen slice.
                resid = target[val_rows] - probe.predict(design.iloc[val_rows])
                smearing = float(np.mean(np.exp(resid)))
        # Refit on everything: the validation slice is the most recent, most useful data.
        booster = self._booster(best, objective)
        booster.fit(design, target)
        return _Member(objective, booster, best, smearing)

    # -- parts ------------------------------------------------------------------------------

    def _booster(self, n_estimators: int, objective: str) -> Any:
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            objective="gamma" if objective == "qlike" else "regression",
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
            # Reproducible runs: LightGBM otherwise times row- against column-wise histogram
            # building on the first iteration and keeps the faster, so machine load could
            # pick the layout (and, with several threads, the summation order).
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )

    def _select_features(self, X: pd.DataFrame) -> list[str]:
        if self.features is not None:
            missing = [c for c in self.features if c not in X.columns]
            if missing:
                raise ForecasterInputError(f"GBM: X lacks the requested features {missing}")
            return list(self.features)
        numeric = [
            c
            for c in X.columns
            if c not in EXCLUDED_COLUMNS and pd.api.types.is_numeric_dtype(X[c].dtype)
        ]
        if not numeric:
            raise ForecasterInputError("GBM: X has no numeric feature columns")
        return numeric

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ForecasterInputError(f"GBM: X lacks the fitted features {missing}")
        design = X[self.feature_names_].astype("float64").reset_index(drop=True)
        for name, num, den in RATIO_FEATURES:
            if num in X.columns and den in X.columns:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.log(X[num].to_numpy(dtype="float64") / X[den].to_numpy("float64"))
                design[name] = np.where(np.isfinite(ratio), ratio, np.nan)
        if not self.asset_code:
            return design
        # Unseen assets become NaN (LightGBM's missing branch), never a wrong code.
        design["asset_code"] = pd.Categorical(
            X["asset"].astype(str).to_numpy(), categories=self.assets_
        )
        return design


@dataclass(frozen=True)
class _Member:
    """One fitted booster of the forecaster and how to turn its output into a variance."""

    objective: str
    booster: Any
    best_iteration: int
    smearing: float

    def predict(self, design: pd.DataFrame) -> np.ndarray:
        raw = np.asarray(self.booster.predict(design), dtype="float64")
        if self.objective == "qlike":
            return raw  # gamma objective: the booster already returns exp(f)
        return np.exp(raw) * self.smearing


def _early_stopping(rounds: int) -> Any:
    import lightgbm as lgb

    return lgb.early_stopping(rounds, verbose=False)


def _eval_arguments(X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """Validation data in the form this LightGBM takes (``eval_X`` from 4.6, else ``eval_set``)."""
    import inspect

    import lightgbm as lgb

    if "eval_X" in inspect.signature(lgb.LGBMRegressor.fit).parameters:
        return {"eval_X": (X,), "eval_y": (y,)}
    return {"eval_set": [(X, y)]}


def _stride_mask(X: pd.DataFrame, stride: int) -> np.ndarray:
    if stride < 1:
        raise ForecasterInputError(f"row_stride must be >= 1, got {stride}")
    if stride == 1:
        return np.ones(len(X), dtype=bool)
    hours = pd.DatetimeIndex(X["ts"]).asi8 // 3_600_000_000_000
    return np.asarray(hours % stride == 0)
