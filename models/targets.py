"""Forecast targets: forward realized variance over ``(t, t+H]`` and its log.

The target of the bar that closes at ``ts + interval`` is built only from returns of the
bars ``t+1 .. t+H``, i.e. strictly after that close, so it can never leak into a feature of
the same row. Returns come from :func:`features.volatility.log_returns` (the function the
features use too), on a complete per-asset grid where a missing bar is a NaN return.

Rule for missing data: a target is NaN as soon as any of its ``H`` returns is NaN. A gap in
the data therefore removes ``H`` targets before it; it is never filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from models.errors import ModelsError
from models.spec import TargetSpec

TARGET_COLUMNS: tuple[str, ...] = ("ts", "asset", "rv_fwd", "log_rv_fwd", "ret_fwd")
"""Columns of :func:`forward_targets`: forward RV, its log and the forward log return."""

TARGET_VALUE_COLUMNS: tuple[str, ...] = ("rv_fwd", "log_rv_fwd", "ret_fwd", "adverse_fwd")
"""The future-valued columns; a model must never see them as features."""


class TargetError(ModelsError, ValueError):
    """The returns handed to the target builder break the complete-grid contract."""


def forward_targets(returns: pd.DataFrame, horizon: int = 24, interval: str = "1h") -> pd.DataFrame:
    """Forward realized variance, its log and the forward return for every ``(ts, asset)``.

    For the row of bar ``t`` (columns ``ts, asset``) with hourly log returns ``r``::

        rv_fwd(t)     = sum_{k=1..H} r_{t+k}^2
        log_rv_fwd(t) = log(rv_fwd(t))              (NaN where rv_fwd <= 0)
        ret_fwd(t)    = sum_{k=1..H} r_{t+k}        (the H-ahead log return, for VaR/ES)

    Parameters
    ----------
    returns
        Frame with columns ``ts, asset, ret`` as produced by
        :func:`features.volatility.log_returns`: one row per bar on a complete grid.
    horizon
        Number of bars ``H`` in the forward window (24 for a day of hourly bars).
    interval
        Bar interval; used only to check that the grid is complete.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TARGET_COLUMNS`, same rows and order as ``returns`` sorted by
        ``asset, ts``. The last ``H`` rows of each asset are NaN (the future is unknown).

    Raises
    ------
    TargetError
        If a column is missing, ``horizon < 1``, or an asset's ``ts`` are not a strictly
        increasing grid of step ``interval`` (a missing bar must be a NaN row, not absent).

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")
    >>> r = pd.DataFrame({"ts": ts, "asset": "BTC", "ret": [0.0, 0.01, 0.02, -0.01]})
    >>> forward_targets(r, horizon=2)["rv_fwd"].round(6).tolist()
    [0.0005, 0.0005, nan, nan]
    """
    if horizon < 1:
        raise TargetError(f"horizon must be at least one bar, got {horizon}")
    missing = {"ts", "asset", "ret"} - set(returns.columns)
    if missing:
        raise TargetError(
            f"returns frame lacks columns {sorted(missing)}; build it with "
            "features.volatility.log_returns(bars, interval)"
        )
    step = interval_to_timedelta(interval)
    frame = returns[["ts", "asset", "ret"]].sort_values(["asset", "ts"], kind="stable")
    frame = frame.reset_index(drop=True)
    parts = []
    for asset, group in frame.groupby("asset", sort=False, observed=True):
        _check_grid(group["ts"], step, str(asset))
        ret = group["ret"].to_numpy(dtype="float64")
        parts.append(
            pd.DataFrame(
                {
                    "rv_fwd": _forward_window_sum(ret**2, horizon),
                    "ret_fwd": _forward_window_sum(ret, horizon),
                },
                index=group.index,
            )
        )
    sums = pd.concat(parts) if parts else pd.DataFrame({"rv_fwd": [], "ret_fwd": []})
    out = frame[["ts", "asset"]].copy()
    out["rv_fwd"] = sums["rv_fwd"]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_rv = np.log(out["rv_fwd"].to_numpy(dtype="float64"))
    # An exactly flat day has log RV = -inf: not a usable regression target.
    out["log_rv_fwd"] = np.where(np.isfinite(log_rv), log_rv, np.nan)
    out["ret_fwd"] = sums["ret_fwd"]
    return out[list(TARGET_COLUMNS)]


def forward_adverse_move(
    returns: pd.DataFrame, horizon: int = 24, side: str = "long", interval: str = "1h"
) -> pd.Series:
    """The largest adverse move of a position opened at the close of ``t`` and held ``H`` bars.

    With the cumulative log return ``c_k = sum_{j=1..k} r_{t+j}`` for ``k = 1..H`` (bar
    closes after the entry), the loss fraction of notional at the worst close is::

        long:  1 - exp(min(0, min_k c_k))     (the largest drawdown)
        short: exp(max(0, max_k c_k)) - 1     (the largest run-up)

    Only returns in ``(t, t+H]`` enter (strictly after the entry close); a window with a
    missing return is NaN (never filled). Closes only: a move inside a bar that reverses
    by its close is not seen.

    Parameters
    ----------
    returns
        Frame ``ts, asset, ret`` on a complete per-asset grid
        (:func:`features.volatility.log_returns`).
    horizon
        Bars ``H`` held.
    side
        ``"long"`` or ``"short"``.
    interval
        Bar interval (checks the grid).

    Returns
    -------
    pandas.Series
        ``adverse_fwd``, aligned with ``returns`` sorted by ``asset, ts`` (index reset).

    Examples
    --------
    >>> import pandas as pd
    >>> ts = pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC")
    >>> r = pd.DataFrame({"ts": ts, "asset": "BTC", "ret": [0.0, -0.02, 0.03, -0.01]})
    >>> forward_adverse_move(r, horizon=2).round(4).tolist()
    [0.0198, 0.0, nan, nan]
    """
    if horizon < 1:
        raise TargetError(f"horizon must be at least one bar, got {horizon}")
    if side not in ("long", "short"):
        raise TargetError(f"side must be 'long' or 'short', got {side!r}")
    missing = {"ts", "asset", "ret"} - set(returns.columns)
    if missing:
        raise TargetError(f"returns frame lacks columns {sorted(missing)}")
    step = interval_to_timedelta(interval)
    frame = returns[["ts", "asset", "ret"]].sort_values(["asset", "ts"], kind="stable")
    frame = frame.reset_index(drop=True)
    out = np.full(len(frame), np.nan)
    for asset, group in frame.groupby("asset", sort=False, observed=True):
        _check_grid(group["ts"], step, str(asset))
        ret = group["ret"].to_numpy(dtype="float64")
        n = ret.size
        if n <= horizon:
            continue
        # Row i's window is ret[i+1 .. i+H]: its own cumulative path, nothing before it.
        paths = np.cumsum(np.lib.stride_tricks.sliding_window_view(ret[1:], horizon), axis=1)
        if side == "long":
            moves = 0.0 - np.expm1(np.minimum(paths.min(axis=1), 0.0))  # no -0.0
        else:
            moves = np.expm1(np.maximum(paths.max(axis=1), 0.0))
        values = np.full(n, np.nan)
        values[: n - horizon] = moves  # a NaN return anywhere in the window propagates
        out[group.index.to_numpy()] = values
    return pd.Series(out, name="adverse_fwd")


def attach_targets(frame: pd.DataFrame, target: TargetSpec, interval: str) -> pd.DataFrame:
    """The training panel: feature rows plus the target's columns (the one place per kind).

    Every kind gets ``rv_fwd`` and ``ret_fwd`` (the forward return the calibration scores);
    ``kind="adverse_move"`` adds its target ``adverse_fwd``
    (:func:`forward_adverse_move`). For ``kind="variance"`` the target
    (:attr:`TargetSpec.column`) is ``rv_fwd``. They are built by
    :func:`forward_targets` from the frame's own log-return column ``ret_<interval>`` (the
    returns the features use), so features and targets share one grid and one definition
    of a return.

    Parameters
    ----------
    frame
        A feature frame (one row per ``ts, asset``) with the column ``ret_<interval>``.
    target
        What is forecast: its kind and horizon in bars.
    interval
        Bar interval, e.g. ``"1h"``.

    Returns
    -------
    pandas.DataFrame
        ``frame`` sorted by ``asset, ts`` (``asset`` as str) with ``rv_fwd`` and ``ret_fwd``.

    Raises
    ------
    TargetError
        If the frame lacks ``ret_<interval>`` or breaks the complete-grid contract.
    """
    column = f"ret_{interval}"
    if column not in frame.columns:
        raise TargetError(
            f"the feature frame lacks {column}, the log return the targets are built from; "
            "build it with features.build.build_features at the same interval"
        )
    panel = frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)
    returns = panel[["ts", "asset", column]].rename(columns={column: "ret"})
    targets = forward_targets(returns, horizon=target.horizon, interval=interval)
    panel["asset"] = panel["asset"].astype(str)
    # forward_targets sorts by asset, ts exactly like the panel, so the rows align.
    panel["rv_fwd"] = targets["rv_fwd"].to_numpy()
    panel["ret_fwd"] = targets["ret_fwd"].to_numpy()
    if target.kind == "adverse_move":
        moves = forward_adverse_move(returns, target.horizon, target.side, interval)
        panel["adverse_fwd"] = moves.to_numpy()
    return panel


def _forward_window_sum(values: np.ndarray, horizon: int) -> np.ndarray:
    """Sum of ``values[t+1 .. t+H]`` for every t; NaN if any term is NaN or out of range."""
    n = values.size
    out = np.full(n, np.nan)
    if n <= horizon:
        return out
    # A direct window sum (not a difference of cumulative sums) keeps each target exactly
    # independent of everything before its window.
    windows = np.lib.stride_tricks.sliding_window_view(values[1:], horizon)
    out[: n - horizon] = windows.sum(axis=1)
    return out


def _check_grid(ts: pd.Series, step: pd.Timedelta, asset: str) -> None:
    diffs = ts.diff().iloc[1:]
    wrong = diffs != step
    if wrong.any():
        where = ts.iloc[1:][wrong.to_numpy()].iloc[0]
        raise TargetError(
            f"asset {asset}: returns are not on a complete {step} grid at {where} "
            f"(step {diffs[wrong].iloc[0]}); pass the output of features.volatility.log_returns, "
            "which keeps missing bars as NaN rows"
        )
