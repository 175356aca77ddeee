"""Point-in-time volatility estimators on a complete per-asset bar grid.

Every estimator here looks backwards only: the value at bar ``t`` uses bars ``t-n+1 .. t``
(bar ``t`` included, since it is known at its close). Inputs are one asset's arrays laid
on a *complete* time grid (:func:`complete_grid`): a missing bar is a row of NaN, never a
forward-filled price, so a return that spans a gap is NaN and windows count it as missing.

Min-valid rule
--------------
A window of ``n`` bars yields a value only if at least ``min_valid_count(n, fraction)``
(= ``ceil(fraction * n)``, default fraction 0.8) of its observations are valid; otherwise
NaN. Window *totals* (realized variance and friends) are rescaled to the full window,
``total = n * mean(valid observations)``, so a window with a missing bar stays comparable
with a full one; on a full window this is exactly the plain sum.

Window variances from range estimators are the per-bar estimates averaged the same way and
scaled by ``n``, so every ``*_24h`` variance here is on the same scale as ``rv_24h``.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pandas as pd
from pandas._libs.window.aggregations import roll_mean as _roll_mean
from pandas._libs.window.aggregations import roll_sum as _roll_sum
from pandas._libs.window.aggregations import roll_var as _roll_var

from features.bars import interval_to_timedelta
from features.errors import FeatureInputError  # re-exported: older code imports it from here

__all__ = [
    "FeatureInputError",
    "bipower_variation",
    "complete_grid",
    "ewma_variance",
    "garman_klass_variance",
    "jump_variation",
    "log_returns",
    "min_valid_count",
    "parkinson_variance",
    "realized_quarticity",
    "realized_semivariances",
    "realized_variance",
    "rogers_satchell_variance",
    "rolling_covariance",
    "window_mean",
    "window_total",
    "yang_zhang_variance",
]

FloatArray = np.ndarray
"""A 1-D float64 array of one asset on its complete grid."""

_PARKINSON_SCALE: Final[float] = 1.0 / (4.0 * math.log(2.0))
_GK_CLOSE_WEIGHT: Final[float] = 2.0 * math.log(2.0) - 1.0
_BIPOWER_SCALE: Final[float] = math.pi / 2.0  # mu_1^{-2}, mu_1 = E|Z| = sqrt(2/pi)


# --------------------------------------------------------------------------------------
# Grid and returns (the features -> models contract)
# --------------------------------------------------------------------------------------


def log_returns(bars: pd.DataFrame, interval: str = "1h") -> pd.DataFrame:
    """Close-to-close log returns on a complete per-asset time grid.

    Parameters
    ----------
    bars
        Bars with at least ``ts``, ``asset`` and ``close`` (see :mod:`features.bars`).
    interval
        Bar interval, e.g. ``"1h"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``ts, asset, ret``, sorted by ``asset, ts``. Each asset spans its first to
        last bar with one row per interval; ``ret`` is NaN at the first bar, at a missing
        bar and at the first bar after a gap (a return spanning a gap is not observed).

    Raises
    ------
    FeatureInputError
        On duplicate or off-grid times, naive timestamps or non-positive closes.

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    >>> bars = pd.DataFrame({"ts": ts[[0, 2]], "asset": "BTC", "close": [100.0, 101.0]})
    >>> log_returns(bars)["ret"].isna().tolist()
    [True, True, True]
    """
    grid = complete_grid(bars, interval, columns=("close",))
    ret = close_returns(grid["close"].to_numpy(dtype="float64"))
    # The first bar of each asset has no previous close of the same asset.
    assets = grid["asset"].astype(str).to_numpy()
    first = np.ones(len(assets), dtype=bool)
    first[1:] = assets[1:] != assets[:-1]
    ret[first] = np.nan
    return pd.DataFrame({"ts": grid["ts"], "asset": grid["asset"], "ret": ret})


def close_returns(close: FloatArray) -> FloatArray:
    """Log return of each bar's close on the previous bar's close (NaN across gaps)."""
    out = np.full(close.shape, np.nan)
    if close.size > 1:
        log_close = np.log(close)
        out[1:] = log_close[1:] - log_close[:-1]
    return out


def complete_grid(
    bars: pd.DataFrame,
    interval: str,
    columns: tuple[str, ...] | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Lay each asset's bars on a complete grid from its first to its last bar (or ``end``).

    Parameters
    ----------
    bars
        Bars with ``ts`` (tz-aware UTC bar open) and ``asset``.
    interval
        Bar interval, e.g. ``"1h"``.
    columns
        Value columns to carry (default: every column but ``ts`` and ``asset``).
    end
        Extend every grid to at least this bar time (the market's last bar), so an asset
        whose latest bars are missing still has rows at the market's present. Without it
        the live view and a back-test of the same time could disagree.

    Returns
    -------
    pandas.DataFrame
        ``ts, asset`` plus ``columns``, sorted by ``asset, ts``; rows of missing bars hold
        NaN (prices are never forward-filled).

    Raises
    ------
    FeatureInputError
        If ``ts`` is naive, a key is duplicated, a bar is off its asset's grid, or a price
        column holds a non-positive value.
    """
    step = interval_to_timedelta(interval)
    _require_columns(bars, ("ts", "asset", *(columns or ())))
    if columns is None:
        columns = tuple(c for c in bars.columns if c not in ("ts", "asset"))
    ts = bars["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise FeatureInputError(
            f"bars column 'ts' has dtype {ts.dtype}; bar times must be tz-aware UTC "
            "(convert with pd.to_datetime(..., utc=True) in the source)"
        )
    parts = [
        _asset_on_grid(asset, frame, step, columns, end)
        for asset, frame in bars.groupby(bars["asset"].astype(str), sort=True)
    ]
    if not parts:
        empty = {"ts": pd.Series(dtype="datetime64[ns, UTC]"), "asset": pd.Series(dtype="string")}
        empty.update({c: pd.Series(dtype="float64") for c in columns})
        return pd.DataFrame(empty)
    return pd.concat(parts, ignore_index=True)


def _asset_on_grid(
    asset: str,
    frame: pd.DataFrame,
    step: pd.Timedelta,
    columns: tuple[str, ...],
    end: pd.Timestamp | None,
) -> pd.DataFrame:
    ts = pd.DatetimeIndex(frame["ts"]).tz_convert("UTC")
    order = np.argsort(ts.asi8, kind="stable")
    ts = ts[order]
    duplicated = ts.duplicated()
    if duplicated.any():
        raise FeatureInputError(
            f"asset {asset} bar {ts[duplicated][0]}: duplicate bar time; deduplicate the "
            "bars in the data layer before building features"
        )
    offsets = (ts - ts[0]) / step
    position = np.asarray(offsets, dtype="float64")
    off_grid = position != np.round(position)
    if off_grid.any():
        raise FeatureInputError(
            f"asset {asset} bar {ts[off_grid][0]}: not on the {step} grid that starts at "
            f"{ts[0]}; resample or drop off-grid rows in the data layer"
        )
    n = int(position[-1]) + 1 if len(ts) else 0
    if n and end is not None and end > ts[-1]:
        n += int((pd.Timestamp(end) - ts[-1]) // step)
    index = position.astype(np.int64)
    data: dict[str, object] = {
        "ts": pd.date_range(ts[0], periods=n, freq=step) if n else ts,
        "asset": pd.array([asset] * n, dtype="string"),
    }
    for column in columns:
        values = np.full(n, np.nan)
        values[index] = frame[column].to_numpy(dtype="float64", na_value=np.nan)[order]
        data[column] = values
    # One frame from all columns at once: adding them one by one costs a copy each.
    grid = pd.DataFrame(data)
    _check_prices(asset, grid)
    return grid


def _check_prices(asset: str, grid: pd.DataFrame) -> None:
    for column in ("open", "high", "low", "close"):
        if column not in grid:
            continue
        values = grid[column].to_numpy()
        bad = values <= 0  # NaN compares False: missing bars are allowed
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise FeatureInputError(
                f"asset {asset} bar {grid['ts'].iloc[row]}: {column} = {values[row]} is not "
                "positive; quarantine the bar in the data layer"
            )


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureInputError(
            f"bars lack column(s) {missing}; the Bars contract (features.bars) requires them"
        )


# --------------------------------------------------------------------------------------
# Rolling-window primitives (shared by every feature family)
# --------------------------------------------------------------------------------------


def min_valid_count(window: int, fraction: float) -> int:
    """Least number of valid observations a window of ``window`` bars needs (>= 1)."""
    if window < 1:
        raise ValueError(f"window must be at least 1 bar, got {window}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"min-valid fraction must be in (0, 1], got {fraction}")
    # The epsilon keeps e.g. 0.8 * 720 = 576.0000000001 from rounding up to 577.
    return max(1, math.ceil(fraction * window - 1e-9))


def window_mean(values: FloatArray, window: int, min_valid: int) -> FloatArray:
    """Trailing mean over ``window`` bars of the valid (non-NaN) values; NaN if too few.

    Exactly ``pd.Series(values).rolling(window, min_periods=min_valid).mean()``: the same
    kernel on the same bounds and input preparation (infinities count as missing), without
    building a Series and a Rolling object per call, which cost more than the mean itself
    on the few thousand bars of an hourly update (a feature build makes hundreds of these
    calls). ``tests/features/test_volatility.py`` checks it against pandas' public API.
    """
    x = np.asarray(values, dtype="float64")
    if window < 1 or not 0 <= min_valid <= window:
        raise ValueError(f"need window >= 1 and 0 <= min_valid <= window: {window}, {min_valid}")
    if x.size == 0:
        return x.copy()
    inf = np.isinf(x)
    if inf.any():
        x = np.where(inf, np.nan, x)
    end = np.arange(1, x.size + 1, dtype=np.int64)
    start = np.maximum(end - window, 0)
    with np.errstate(all="ignore"):
        return np.asarray(_roll_mean(np.ascontiguousarray(x), start, end, min_valid))


def window_total(values: FloatArray, window: int, min_valid: int) -> FloatArray:
    """Trailing window sum rescaled to the full window: ``window * mean(valid values)``."""
    return window_mean(values, window, min_valid) * float(window)


def rolling_covariance(
    x: FloatArray, y: FloatArray, window: int, min_valid: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Trailing sample covariance and variances over pairs where both values are valid.

    Returns
    -------
    tuple of arrays
        ``(cov_xy, var_x, var_y)`` with ``ddof=1``; NaN where fewer than
        ``max(min_valid, 2)`` valid pairs fall in the window.
    """
    valid = ~(np.isnan(x) | np.isnan(y))
    xv = np.where(valid, x, np.nan)
    yv = np.where(valid, y, np.nan)
    need = max(min_valid, 2)
    # pandas' online (Kahan / Welford) rolling kernels, computed from the start of the
    # series, so truncating the end leaves them unchanged. These are exactly the steps of
    # ``DataFrame.rolling(window, min_periods=need)`` ``["x"].cov(frame["y"])`` and
    # ``.var()``, called without the Series and Rolling objects (they cost more than the
    # kernels on an hourly update); ``tests/features/test_volatility.py`` checks the three
    # against pandas' public API.
    if window < 1 or need > window:
        raise ValueError(f"need window >= max(min_valid, 2), got {window}, {min_valid}")
    if xv.size == 0:
        return xv.copy(), xv.copy(), yv.copy()
    end = np.arange(1, xv.size + 1, dtype=np.int64)
    start = np.maximum(end - window, 0)
    with np.errstate(all="ignore"):
        # The binary moment first masks each side with the other (x + 0 * y), as pandas does.
        xa, ya = _finite_or_nan(xv + 0 * yv), _finite_or_nan(yv + 0 * xv)
        mean_xy = _roll_mean(xa * ya, start, end, need)
        mean_x = _roll_mean(xa, start, end, need)
        mean_y = _roll_mean(ya, start, end, need)
        count = _roll_sum((~np.isnan(xa + ya)).astype(np.float64), start, end, 0)
        cov = (mean_xy - mean_x * mean_y) * (count / (count - 1))
        var_x = np.asarray(_roll_var(_finite_or_nan(xv), start, end, need, ddof=1))
        var_y = np.asarray(_roll_var(_finite_or_nan(yv), start, end, need, ddof=1))
    return np.asarray(cov), np.maximum(var_x, 0.0), np.maximum(var_y, 0.0)


def _finite_or_nan(values: FloatArray) -> FloatArray:
    """The rolling kernels' input: contiguous float64 with infinities as missing (pandas')."""
    inf = np.isinf(values)
    return np.ascontiguousarray(np.where(inf, np.nan, values) if inf.any() else values)


# --------------------------------------------------------------------------------------
# Return-based estimators
# --------------------------------------------------------------------------------------


def realized_variance(ret: FloatArray, window: int, min_valid: int) -> FloatArray:
    r"""Realized variance :math:`RV_t = \sum_{i=t-n+1}^{t} r_i^2` over ``window`` bars.

    Rescaled to the full window when bars are missing (see the module's min-valid rule).
    """
    return window_total(ret * ret, window, min_valid)


def realized_semivariances(
    ret: FloatArray, window: int, min_valid: int
) -> tuple[FloatArray, FloatArray]:
    r"""Upside and downside realized semivariances (Barndorff-Nielsen, Kinnebrock, Shephard).

    :math:`RS^+ = \sum r_i^2 1\{r_i > 0\}`, :math:`RS^- = \sum r_i^2 1\{r_i < 0\}`;
    they add up to the realized variance.
    """
    squared = ret * ret
    up = np.where(ret > 0, squared, 0.0)
    down = np.where(ret < 0, squared, 0.0)
    missing = np.isnan(ret)
    up[missing] = np.nan
    down[missing] = np.nan
    return window_total(up, window, min_valid), window_total(down, window, min_valid)


def realized_quarticity(ret: FloatArray, window: int, min_valid: int) -> FloatArray:
    r"""Realized quarticity :math:`RQ = \frac{n}{3}\sum r_i^4`, the HARQ correction input.

    Under constant volatility :math:`E[RQ] = n^2 \sigma^4 \Delta^2 = IV^2`.
    """
    return window_total(ret**4, window, min_valid) * (window / 3.0)


def bipower_variation(ret: FloatArray, window: int, min_valid: int) -> FloatArray:
    r"""Bipower variation :math:`BV = \frac{\pi}{2}\frac{n}{n-1}\sum |r_i||r_{i-1}|`.

    Robust to finitely many jumps, so :math:`RV - BV` estimates the jump variation. The
    ``n-1`` adjacent pairs of the window are averaged over the valid pairs and rescaled.
    """
    if window < 2:
        raise ValueError(f"bipower variation needs a window of at least 2 bars, got {window}")
    absolute = np.abs(ret)
    pairs = np.full(ret.shape, np.nan)
    if ret.size > 1:
        pairs[1:] = absolute[1:] * absolute[:-1]
    pair_mean = window_mean(pairs, window - 1, max(1, min(min_valid, window - 1)))
    return _BIPOWER_SCALE * window * pair_mean


def jump_variation(ret: FloatArray, window: int, min_valid: int) -> FloatArray:
    """Jump component ``max(RV - BV, 0)`` over the window (Barndorff-Nielsen & Shephard)."""
    rv = realized_variance(ret, window, min_valid)
    bv = bipower_variation(ret, window, min_valid)
    return np.maximum(rv - bv, 0.0)


def ewma_variance(
    ret: FloatArray, lam: float = 0.94, min_bars: int = 24, max_gap_bars: int | None = None
) -> FloatArray:
    r"""RiskMetrics per-bar variance :math:`v_t = \lambda v_{t-1} + (1-\lambda) r_t^2`.

    Seeded with the first squared return; NaN until ``min_bars`` valid returns have been
    seen. A missing return skips the update, so across a short gap the value is the
    estimate as of the last observed bar (no price is filled in). With ``max_gap_bars``,
    the value is NaN once no valid return has been seen in that many bars: a stale
    estimate is not carried on indefinitely.
    """
    if not 0.0 < lam < 1.0:
        raise ValueError(f"EWMA lambda must be in (0, 1), got {lam}")
    squared = pd.Series(ret * ret, dtype="float64")
    ewm = squared.ewm(alpha=1.0 - lam, adjust=False, ignore_na=True, min_periods=min_bars)
    out = ewm.mean().to_numpy()
    if max_gap_bars is not None:
        recent = squared.notna().astype("float64").rolling(max_gap_bars, min_periods=1).sum()
        out[recent.to_numpy() == 0] = np.nan
    return out


# --------------------------------------------------------------------------------------
# Range-based estimators (per-bar variance of the log price over one bar)
# --------------------------------------------------------------------------------------


def parkinson_variance(high: FloatArray, low: FloatArray) -> FloatArray:
    r"""Parkinson (1980): :math:`\frac{(\ln H/L)^2}{4\ln 2}`, unbiased for driftless GBM."""
    hl = np.log(high / low)
    return _PARKINSON_SCALE * hl * hl


def garman_klass_variance(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray
) -> FloatArray:
    r"""Garman-Klass (1980): :math:`\tfrac12(\ln H/L)^2 - (2\ln2-1)(\ln C/O)^2`."""
    hl = np.log(high / low)
    co = np.log(close / open_)
    return 0.5 * hl * hl - _GK_CLOSE_WEIGHT * co * co


def rogers_satchell_variance(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray
) -> FloatArray:
    r"""Rogers-Satchell (1991): :math:`\ln\frac HC\ln\frac HO + \ln\frac LC\ln\frac LO`.

    Unbiased for GBM with any drift.
    """
    return np.log(high / close) * np.log(high / open_) + np.log(low / close) * np.log(low / open_)


def yang_zhang_variance(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    min_valid: int,
) -> FloatArray:
    r"""Yang-Zhang (2000) window variance, scaled to ``window`` bars.

    :math:`\sigma^2_{YZ} = \sigma^2_o + k\sigma^2_c + (1-k)\sigma^2_{RS}` per bar, with
    :math:`\sigma^2_o` the sample variance of open jumps :math:`\ln O_t/C_{t-1}`,
    :math:`\sigma^2_c` that of :math:`\ln C_t/O_t`, :math:`\sigma^2_{RS}` the mean
    Rogers-Satchell estimate and :math:`k = 0.34/(1.34 + (n+1)/(n-1))`. Drift-independent.
    In a 24/7 market the open jump is close to zero, but it is kept: a missing previous
    bar makes it NaN rather than assuming continuity.
    """
    if window < 2:
        raise ValueError(f"Yang-Zhang needs a window of at least 2 bars, got {window}")
    need = max(min_valid, 2)
    open_jump = np.full(open_.shape, np.nan)
    if open_.size > 1:
        open_jump[1:] = np.log(open_[1:] / close[:-1])
    open_close = np.log(close / open_)
    var_open = pd.Series(open_jump).rolling(window, min_periods=need).var().to_numpy()
    var_close = pd.Series(open_close).rolling(window, min_periods=need).var().to_numpy()
    rs_mean = window_mean(rogers_satchell_variance(open_, high, low, close), window, need)
    k = 0.34 / (1.34 + (window + 1.0) / (window - 1.0))
    per_bar = np.maximum(var_open, 0.0) + k * np.maximum(var_close, 0.0) + (1.0 - k) * rs_mean
    return per_bar * window
