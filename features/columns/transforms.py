"""Small point-in-time transforms the column families share: lags, z-scores, surprises.

Each output at row ``t`` reads rows ``<= t`` only; a window with fewer than ``min_valid``
valid values gives NaN (the feature set's min-valid rule).
"""

from __future__ import annotations

import numpy as np

from features import volatility

__all__ = ["lagged", "lagged_difference", "log_ratio", "rolling_zscore"]


def lagged(values: np.ndarray, lag: int) -> np.ndarray:
    """``values[t - lag]`` at row ``t`` (NaN for the first ``lag`` rows)."""
    out = np.full(values.shape, np.nan)
    if lag == 0:
        return values.astype("float64", copy=True)
    if values.size > lag:
        out[lag:] = values[:-lag]
    return out


def lagged_difference(values: np.ndarray, lag: int) -> np.ndarray:
    """``values[t] - values[t - lag]``."""
    return values - lagged(values, lag)


def rolling_zscore(values: np.ndarray, window: int, min_valid: int) -> np.ndarray:
    """``(x_t - mean) / std`` over the trailing ``window`` rows including ``t``; NaN if std is 0."""
    mean = volatility.window_mean(values, window, min_valid)
    square = volatility.window_mean(values * values, window, min_valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.maximum(square - mean * mean, 0.0))
        return np.where(std > 0, (values - mean) / std, np.nan)


def log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``log(numerator / denominator)`` where both are > 0, else NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (numerator > 0) & (denominator > 0)
        return np.where(
            ok, np.log(np.where(ok, numerator, 1.0) / np.where(ok, denominator, 1.0)), np.nan
        )
