"""HAR-RV and HARQ forecasters of realized variance (Corsi 2009; Bollerslev et al. 2016)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from models.estimators.base import ForecasterInputError, VarianceForecaster
from models.spec import HAR_COLUMNS, QUARTICITY_COLUMN

BiasCorrection = Literal["lognormal", "smearing", "none"]


class HARForecaster(VarianceForecaster):
    """HAR-RV (Corsi 2009) on log realized variance, optionally HARQ, with bias correction.

    ``log RV_fwd = b0 + b_d log RV_d + b_w log RV_w + b_m log RV_m [+ b_q log RV_d * q] + e``
    with ``q = sqrt(RQ_d) / RV_d`` (demeaned on the training rows) for HARQ (Bollerslev,
    Patton and Quaedvlieg 2016): the daily weight shrinks when RV_d is measured noisily.
    The forecast of the level is ``exp(fit) * c``: ``c = exp(s^2 / 2)`` under a log-normal
    error (``"lognormal"``), the mean of ``exp(residual)`` (``"smearing"``, Duan 1983), or 1.

    Parameters
    ----------
    quarticity
        Add the HARQ interaction (needs the ``rq_24h`` feature).
    pooled
        One regression across assets instead of one per asset.
    bias_correction
        How to go from the log forecast to a variance forecast.
    """

    def __init__(
        self,
        quarticity: bool = False,
        pooled: bool = False,
        bias_correction: BiasCorrection = "lognormal",
    ) -> None:
        self.quarticity = quarticity
        self.pooled = pooled
        self.bias_correction = bias_correction

    _tags: ClassVar[dict[str, Any]] = {"tunable_window": True}

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (*HAR_COLUMNS, QUARTICITY_COLUMN) if self.quarticity else HAR_COLUMNS

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        if self.bias_correction not in ("lognormal", "smearing", "none"):
            raise ForecasterInputError(f"unknown bias_correction {self.bias_correction!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_y = np.log(y)
        self.q_mean_ = float(np.nanmean(_quarticity_ratio(X))) if self.quarticity else 0.0
        design = self._design(X)
        ok = np.isfinite(log_y) & np.all(np.isfinite(design), axis=1)
        keys = self._keys(X)
        self.coef_: dict[str, np.ndarray] = {}
        self.correction_: dict[str, float] = {}
        for key in np.unique(keys[ok]):
            rows = ok & (keys == key)
            if rows.sum() < design.shape[1] * 10:
                raise ForecasterInputError(
                    f"HAR: only {int(rows.sum())} usable training rows for asset {key}; "
                    "lengthen the training window"
                )
            coef, *_ = np.linalg.lstsq(design[rows], log_y[rows], rcond=None)
            resid = log_y[rows] - design[rows] @ coef
            self.coef_[str(key)] = coef
            self.correction_[str(key)] = _bias_factor(resid, self.bias_correction)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        design = self._design(X)
        keys = self._keys(X)
        out = np.full(len(X), np.nan)
        for key in np.unique(keys):
            if str(key) not in self.coef_:
                raise ForecasterInputError(
                    f"HAR was not fitted on asset {key}; include it in the training rows"
                )
            rows = keys == key
            out[rows] = np.exp(design[rows] @ self.coef_[str(key)]) * self.correction_[str(key)]
        return out

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        logs = [_safe_log(X[c].to_numpy(dtype="float64")) for c in HAR_COLUMNS]
        columns = [np.ones(len(X)), *logs]
        if self.quarticity:
            columns.append(logs[0] * (_quarticity_ratio(X) - self.q_mean_))
        return np.column_stack(columns)

    def _keys(self, X: pd.DataFrame) -> np.ndarray:
        if self.pooled:
            return np.full(len(X), "__pooled__", dtype=object)
        return X["asset"].astype(str).to_numpy(dtype=object)


def _quarticity_ratio(X: pd.DataFrame) -> np.ndarray:
    rq = X[QUARTICITY_COLUMN].to_numpy(dtype="float64")
    rv = X["har_d"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(np.maximum(rq, 0.0)) / rv
    return np.where(np.isfinite(ratio), ratio, np.nan)


def _bias_factor(resid: np.ndarray, how: BiasCorrection) -> float:
    if how == "lognormal":
        return float(np.exp(0.5 * np.var(resid, ddof=1)))
    if how == "smearing":
        return float(np.mean(np.exp(resid)))
    return 1.0


def _safe_log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(values)
    return np.where(np.isfinite(out), out, np.nan)
