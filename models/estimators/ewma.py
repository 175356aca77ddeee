"""RiskMetrics EWMA variance forecaster (decay fixed, or chosen on the training rows)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.estimators.base import ForecasterInputError, VarianceForecaster


class EWMAForecaster(VarianceForecaster):
    """RiskMetrics EWMA: ``s2_{t+1} = lam s2_t + (1 - lam) r_t^2``, forecast ``H s2_{t+1}``.

    The EWMA variance is flat over the horizon, so the ``H``-bar variance is ``H`` times the
    one-bar forecast. An asset's first ``ceil(1 / (1 - lam))`` returns (the recursion's
    effective sample size: 17 bars at 0.94) only warm it up and give NaN, never a forecast:
    seeded by one squared return the recursion would forecast near-zero variance for a
    newly listed asset (a calm first hour gave 1e-12 of the 24h variance). With
    ``estimate=True`` the decay ``lam`` is chosen per fit on the training rows from ``grid``
    by QLIKE against ``y`` (one pooled value).

    Parameters
    ----------
    lam
        Decay per bar (0.94 is RiskMetrics' daily value; used when ``estimate`` is False).
    horizon
        Bars in the forecast window.
    estimate
        Choose ``lam`` on the training data.
    grid
        Candidate decays for ``estimate``.
    return_column
        Column of the bar's log return (known at its close).
    """

    _tags: ClassVar[dict[str, Any]] = {"requires_history": True}

    def __init__(
        self,
        lam: float = 0.94,
        horizon: int = 24,
        estimate: bool = False,
        grid: tuple[float, ...] = (0.94, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995),
        return_column: str = "ret_1h",
    ) -> None:
        self.lam = lam
        self.horizon = horizon
        self.estimate = estimate
        self.grid = grid
        self.return_column = return_column

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.return_column,)

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        if not 0.0 < self.lam < 1.0:
            raise ForecasterInputError(f"EWMA lam must be in (0, 1), got {self.lam}")
        if not self.estimate:
            self.lam_ = float(self.lam)
            return
        from models.evaluation import qlike

        scores = {}
        for lam in self.grid:
            forecast = self.horizon * _ewma_per_asset(X, self.return_column, lam)
            scores[lam] = float(np.nanmean(qlike(y, forecast)))
        self.lam_ = float(min(scores, key=scores.__getitem__))
        self.scores_ = scores

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.horizon * _ewma_per_asset(X, self.return_column, self.lam_)


def warmup_bars(lam: float) -> int:
    """Returns an asset needs before its EWMA variance is a forecast: ``ceil(1 / (1 - lam))``."""
    # The tolerance keeps binary rounding from adding a bar: 1 / (1 - 0.9) is 10.000000000000002.
    return math.ceil(1.0 / (1.0 - lam) - 1e-9)


def _ewma_per_asset(X: pd.DataFrame, column: str, lam: float) -> np.ndarray:
    """One-bar-ahead EWMA variance per row; a NaN return leaves the variance unchanged.

    NaN until the asset has :func:`warmup_bars` finite returns.
    """
    squared = X[column].astype("float64") ** 2
    warmup = warmup_bars(lam)
    # ignore_na=True skips a missing bar instead of decaying through it; min_periods counts
    # finite returns only, so a gap does not shorten the warm-up.
    smoothed = squared.groupby(X["asset"], sort=False, observed=True).transform(
        lambda s: s.ewm(alpha=1.0 - lam, adjust=False, ignore_na=True, min_periods=warmup).mean()
    )
    return smoothed.to_numpy(dtype="float64")
