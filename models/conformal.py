"""Split-conformal calibration of VaR, ES and the forecast interval from past residuals.

A variance forecast ``h`` for the next ``H`` bars becomes a return distribution through
its out-of-sample **scores**, computed only on forecasts whose targets are already known:

* the standardized loss ``s = -r_fwd / sqrt(h)`` (the log-return loss of a long position):
  ``VaR = q * sqrt(h)`` with ``q`` the conformal ``(1 - alpha)`` quantile of ``s``, and the
  ES averages the scores at or beyond ``q``;
* the log ratio ``e = log(RV_fwd / h)``: its conformal ``coverage`` interval gives
  ``[sigma_lower, sigma_upper]`` for the realized volatility ``sqrt(RV_fwd)``.

Split conformal (Vovk et al. 2005; Angelopoulos and Bates 2023): with ``n`` exchangeable
calibration scores, the ``ceil((n + 1)(1 - alpha))``-th smallest covers a new score with
probability at least ``1 - alpha``. Volatility drifts, so the walk-forward recalibrates
at every refit on a rolling window of the most recent known scores
(:func:`calibration_window`), and :func:`adaptive_var` (adaptive conformal inference) moves
the VaR level between refits from exceptions whose outcomes are already known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from models.errors import ModelsError
from models.splitter import target_known


class CalibrationError(ModelsError, ValueError):
    """Too few or unusable scores to calibrate."""


@dataclass(frozen=True)
class ConformalCalibration:
    """Multipliers that turn a variance forecast into VaR, ES and a sigma interval.

    Attributes
    ----------
    var_score
        Conformal ``1 - alpha`` quantile of the standardized loss.
    tail_scores
        Calibration scores at or beyond ``var_score`` (their mean is the ES multiplier).
    log_ratio_lower, log_ratio_upper
        Conformal bounds of ``log(RV_fwd / h)``.
    alpha, coverage
        VaR tail probability and interval coverage.
    n
        Number of calibration scores.
    loss_scores
        All calibration standardized losses, sorted (for other tail levels, e.g. ACI).
    """

    var_score: float
    tail_scores: np.ndarray
    log_ratio_lower: float
    log_ratio_upper: float
    alpha: float
    coverage: float
    n: int
    loss_scores: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def es_score(self) -> float:
        """ES multiplier in standardized units (mean tail score)."""
        return float(self.tail_scores.mean())

    def scores_at(self, alpha: float) -> tuple[float, float]:
        """Conformal VaR and ES multipliers at tail probability ``alpha``."""
        values = self.loss_scores
        n = values.size
        rank = min(max(math.ceil((n + 1) * (1.0 - alpha)), 1), n)
        return float(values[rank - 1]), float(values[rank - 1 :].mean())

    def apply(self, variance: ArrayLike) -> pd.DataFrame:
        """VaR, ES (positive loss fractions of notional) and sigma bounds for forecasts.

        Parameters
        ----------
        variance
            Forecast variance of the ``H``-bar log return.

        Returns
        -------
        pandas.DataFrame
            Columns ``sigma, sigma_lower, sigma_upper, var_99, es_99`` (``var_99`` and
            ``es_99`` are at the calibrated ``alpha``; the names follow the Forecast contract).
        """
        h = np.asarray(variance, dtype="float64")
        sigma = np.sqrt(h)
        # Loss fraction of a long position whose log return is -score * sigma.
        var = -np.expm1(-self.var_score * sigma)
        es = np.mean(-np.expm1(-np.outer(sigma, self.tail_scores)), axis=1) if h.size else h
        return pd.DataFrame(
            {
                "sigma": sigma,
                "sigma_lower": sigma * math.exp(0.5 * self.log_ratio_lower),
                "sigma_upper": sigma * math.exp(0.5 * self.log_ratio_upper),
                "var_99": var,
                "es_99": np.maximum(es, var),
            }
        )


def calibrate(
    variance: ArrayLike,
    realized: ArrayLike,
    ret_fwd: ArrayLike,
    alpha: float = 0.01,
    coverage: float = 0.9,
    min_scores: int = 200,
) -> ConformalCalibration:
    """Calibrate VaR/ES multipliers and the sigma interval on out-of-sample forecasts.

    Parameters
    ----------
    variance
        Out-of-sample variance forecasts ``h`` whose targets are known.
    realized
        Their realized forward variances ``RV_fwd``.
    ret_fwd
        Their realized forward log returns.
    alpha
        VaR tail probability (0.01 for 99%).
    coverage
        Coverage of the sigma interval.
    min_scores
        Fewest usable scores accepted (the 1% tail needs a few hundred).

    Raises
    ------
    CalibrationError
        If fewer than ``min_scores`` finite scores remain.
    """
    h = np.asarray(variance, dtype="float64")
    rv = np.asarray(realized, dtype="float64")
    r = np.asarray(ret_fwd, dtype="float64")
    ok = np.isfinite(h) & (h > 0) & np.isfinite(rv) & (rv > 0) & np.isfinite(r)
    if ok.sum() < min_scores:
        raise CalibrationError(
            f"only {int(ok.sum())} usable calibration scores (need {min_scores}); "
            "lengthen the warm-up or calibration window"
        )
    loss_scores = -r[ok] / np.sqrt(h[ok])
    log_ratio = np.log(rv[ok] / h[ok])
    var_score = conformal_quantile(loss_scores, 1.0 - alpha)
    tail = np.sort(loss_scores[loss_scores >= var_score])
    half = 0.5 * (1.0 - coverage)
    return ConformalCalibration(
        var_score=var_score,
        tail_scores=tail,
        log_ratio_lower=-conformal_quantile(-log_ratio, 1.0 - half),
        log_ratio_upper=conformal_quantile(log_ratio, 1.0 - half),
        alpha=alpha,
        coverage=coverage,
        n=int(ok.sum()),
        loss_scores=np.sort(loss_scores),
    )


def adaptive_var(
    ts: pd.Series,
    sigma: ArrayLike,
    realized_scores: ArrayLike,
    calibration_index: ArrayLike,
    calibrations: Sequence[ConformalCalibration],
    horizon_bars: int,
    step: pd.Timedelta,
    alpha: float = 0.01,
    gamma: float = 0.002,
) -> pd.DataFrame:
    """Adaptive conformal inference (Gibbs and Candès 2021) for one asset's VaR and ES.

    The tail level follows ``a_{t+1} = a_t + gamma (alpha - err_t)``, where ``err_t`` is
    an exception of a forecast whose outcome is KNOWN by time ``t`` (``H`` bars later), so
    the level drifts down after a run of exceptions and back up in calm periods. Each
    row's VaR/ES multipliers are the conformal ones of its fold's calibration at ``a_t``.

    Parameters
    ----------
    ts
        Bar-open times of the rows, increasing.
    sigma
        Forecast sigma per row.
    realized_scores
        Realized standardized losses ``-r_fwd / sigma`` (NaN while unknown or missing).
    calibration_index
        Index into ``calibrations`` per row.
    calibrations
        The per-fold split-conformal calibrations.
    horizon_bars, step
        Delay of the feedback: an outcome is known ``horizon_bars * step`` after ``ts``.
    alpha, gamma
        Target tail probability and ACI step size.

    Returns
    -------
    pandas.DataFrame
        Columns ``alpha_t, var_99, es_99`` (loss fractions; ES from the mean tail score).
    """
    sig = np.asarray(sigma, dtype="float64")
    index = np.asarray(calibration_index, dtype="int64")
    es_score = np.empty(len(index))

    def threshold(i: int, level: float) -> float:
        var_score, es_score[i] = calibrations[index[i]].scores_at(level)
        return var_score

    level, var_score = adaptive_levels(
        ts, realized_scores, threshold, horizon_bars, step, alpha=alpha, gamma=gamma
    )
    var = -np.expm1(-var_score * sig)
    return pd.DataFrame(
        {"alpha_t": level, "var_99": var, "es_99": np.maximum(-np.expm1(-es_score * sig), var)}
    )


def adaptive_levels(
    ts: pd.Series | pd.DatetimeIndex,
    realized_scores: ArrayLike,
    threshold: Callable[[int, float], float],
    horizon_bars: int,
    step: pd.Timedelta,
    alpha: float = 0.01,
    gamma: float = 0.002,
) -> tuple[np.ndarray, np.ndarray]:
    """The adaptive conformal inference recursion (Gibbs and Candès 2021), for any score.

    ``a_{t+1} = a_t + gamma (alpha - err_t)`` where ``err_t`` is an exception (realized
    score above the row's threshold) of a forecast whose outcome is KNOWN by time ``t``
    (``horizon_bars`` bars after its own time). The level is bounded to
    ``[alpha / 5, 5 alpha]``. :func:`adaptive_var` (VaR of a variance forecast) and
    :func:`models.tails.calibrate_quantiles` (a tail-quantile forecast) both run it.

    Parameters
    ----------
    ts
        Bar-open times of the rows, increasing.
    realized_scores
        Realized score per row (NaN while unknown or missing: never fed back).
    threshold
        ``threshold(i, level)``: the score threshold of row ``i`` at tail level ``level``.
    horizon_bars, step
        Delay of the feedback.
    alpha, gamma
        Target tail probability and step size.

    Returns
    -------
    tuple of numpy.ndarray
        The level ``a_t`` and the threshold used, per row.
    """
    times = pd.DatetimeIndex(ts)
    scores = np.asarray(realized_scores, dtype="float64")
    n = len(times)
    level = np.empty(n)
    thresholds = np.empty(n)
    hits = np.zeros(n, dtype=bool)
    known_at = times + horizon_bars * step
    current, fed = alpha, 0
    for i in range(n):
        # Feed back every outcome that has become known by this row's forecast time.
        while fed < i and known_at[fed] <= times[i]:
            if np.isfinite(scores[fed]):
                current += gamma * (alpha - float(hits[fed]))
            fed += 1
        # Bounded so one calm year cannot push VaR to the median or a burst to infinity.
        level[i] = min(max(current, alpha / 5.0), 5.0 * alpha)
        thresholds[i] = threshold(i, level[i])
        hits[i] = bool(np.isfinite(scores[i]) and scores[i] > thresholds[i])
    return level, thresholds


def conformal_quantile(scores: ArrayLike, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (``inf`` if that exceeds ``n``).

    Examples
    --------
    >>> conformal_quantile(range(1, 100), 0.9)  # ceil(100 * 0.9) = 90th smallest
    90.0
    """
    values = np.sort(np.asarray(scores, dtype="float64"))
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        raise CalibrationError("no finite scores to take a conformal quantile of")
    rank = math.ceil((n + 1) * level)
    return float("inf") if rank > n else float(values[rank - 1])


def calibration_window(
    ts: pd.Series,
    as_of: pd.Timestamp,
    horizon_bars: int,
    step: pd.Timedelta,
    days: int,
) -> np.ndarray:
    """Mask of forecasts usable to calibrate at ``as_of``: target known, within ``days``.

    A forecast made for row ``t`` has its outcome at the close of bar ``t + H``, so it is
    usable at a fold starting at ``as_of`` iff ``t + H * step <= as_of``.
    """
    recent = pd.DatetimeIndex(ts) >= as_of - pd.Timedelta(days=days)
    return target_known(ts, as_of, horizon_bars, step) & np.asarray(recent)
