"""Procyclicality and "no ratchet" figures of a margin policy: one function per figure.

The usual procyclicality figures of clearing (CPMI-IOSCO, EMIR RTS 153/2013 Art. 28) and the
ratchet diagnostics of issue #20, all plain functions of arrays so that they can be checked
on hand-computed cases and called the same way for every policy:

* :func:`ratchet_diagnostics`: mean multiplier and the share of (asset, bar) cells at the
  cap and at the floor. Noisy inputs through fast-up/slow-down limits ratchet the multiplier
  upward; these two numbers show it beside every result.
* :func:`peak_to_trough`: the largest posted IM over the smallest positive one (of the
  book's IM in USD, and of its IM per USD of open notional).
* :func:`largest_rise`: the largest increase of an asset's posted IM over any window of
  ``window`` bars, ``max_t (im[t] - min(im[t - window .. t]))``, maximum over assets.
* :func:`trailing_realized_vol` and :func:`calm_capital`: the mean posted IM in the calmest
  third of bars, ranked per asset by its trailing realized volatility *known at the bar's
  open* (returns of completed bars only), against the static policy's on the same bars.

:func:`replay_procyclicality` applies them to a backtest's runs (mean and std over seeds) for
the JSON summary. The replay records the book's initial margin summed over assets
(:attr:`~liquidation.simulate.ReplaySeries.initial_margin`) and split by asset
(``initial_margin_asset``): the peak-to-trough and calm figures are on the total, the
largest rises both on the total (``largest_rise_im_*_usd``) and per asset, max over assets
(``largest_rise_asset_im_*_usd``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.simulate import ReplayInputError, ReplaySeries

DAY_WINDOW_HOURS = 24
"""Window of the one-day rise."""
FIVE_DAY_WINDOW_HOURS = 24 * 5
"""Window of the five-day rise."""


def ratchet_diagnostics(
    multiplier: NDArray[np.float64], floor: float, cap: float, atol: float = 1e-9
) -> dict[str, float]:
    """Mean multiplier and the share of cells at the cap and at the floor.

    Parameters
    ----------
    multiplier
        Multiplier per bar, shape ``(n_bars,)`` or ``(n_assets, n_bars)``; NaN cells are
        ignored.
    floor, cap
        The policy's bounds.
    atol
        Tolerance of "at the bound".

    Returns
    -------
    dict
        ``mean_multiplier``, ``time_at_cap``, ``time_at_floor`` (NaN without finite cells).

    Examples
    --------
    >>> ratchet_diagnostics(np.array([1.0, 3.0, 3.0, 0.8]), floor=0.8, cap=3.0)
    {'mean_multiplier': 1.95, 'time_at_cap': 0.5, 'time_at_floor': 0.25}
    """
    values = np.asarray(multiplier, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if not len(values):
        nan = float("nan")
        return {"mean_multiplier": nan, "time_at_cap": nan, "time_at_floor": nan}
    return {
        "mean_multiplier": float(values.mean()),
        "time_at_cap": float(np.mean(np.abs(values - cap) <= atol)),
        "time_at_floor": float(np.mean(np.abs(values - floor) <= atol)),
    }


def peak_to_trough(im: NDArray[np.float64]) -> float:
    """Largest posted IM over the smallest positive one (NaN without a positive value).

    Examples
    --------
    >>> peak_to_trough(np.array([0.0, 2.0, 8.0, 4.0]))
    4.0
    """
    values = np.asarray(im, dtype=float).ravel()
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive):
        return float("nan")
    return float(positive.max() / positive.min())


def largest_rise(im: NDArray[np.float64], window: int) -> float:
    """``max_t (im[t] - min(im[t - window .. t]))``, maximum over assets (rows).

    Parameters
    ----------
    im
        Posted IM per bar, shape ``(n_bars,)`` or ``(n_assets, n_bars)``.
    window
        Bars looked back (24 for a day of hourly bars); a rise from ``t - window`` to ``t``
        counts.

    Returns
    -------
    float
        The largest rise (0 when the IM never rises; NaN without data).

    Examples
    --------
    >>> largest_rise(np.array([5.0, 1.0, 2.0, 4.0, 3.0]), window=2)
    3.0
    >>> largest_rise(np.array([5.0, 1.0, 2.0, 4.0, 3.0]), window=1)
    2.0
    """
    if window < 1:
        raise ReplayInputError(f"largest_rise: window must be >= 1 bar, got {window}")
    rows = np.atleast_2d(np.asarray(im, dtype=float))
    if rows.shape[1] == 0:
        return float("nan")
    best = 0.0
    for row in rows:
        for lag in range(1, min(window, len(row) - 1) + 1):
            rise = row[lag:] - row[:-lag]
            finite = rise[np.isfinite(rise)]
            if len(finite):
                best = max(best, float(finite.max()))
    return best


def trailing_realized_vol(close: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Std of the log returns of the ``window`` bars completed before each bar's open.

    The value at bar ``t`` uses the closes of bars ``t - window - 1 .. t - 1`` only, so it is
    known at ``t``'s open (NaN until ``window`` returns exist, or where one is missing).

    Parameters
    ----------
    close
        Close per bar, shape ``(n_bars,)`` or ``(n_assets, n_bars)``.
    window
        Returns per estimate (24: a day of hourly bars).

    Returns
    -------
    ndarray
        The same shape as ``close``.
    """
    if window < 2:
        raise ReplayInputError(f"trailing_realized_vol: window must be >= 2, got {window}")
    prices = np.asarray(close, dtype=float)
    rows = np.atleast_2d(prices)
    out = np.full(rows.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.diff(np.log(rows), axis=1)  # returns[:, j] ends at the close of bar j+1
    for t in range(window + 1, rows.shape[1]):
        # Returns ending at the closes of bars t - window .. t - 1.
        out[:, t] = np.std(returns[:, t - window - 1 : t - 1], axis=1, ddof=1)
    return out.reshape(prices.shape)


def calm_capital(
    im: NDArray[np.float64], static_im: NDArray[np.float64], vol: NDArray[np.float64]
) -> dict[str, float]:
    """Mean posted IM in the calmest third of bars, against static on the same bars.

    Each row (asset) ranks its bars with a finite ``vol`` and keeps the lowest third; the
    means of the rows' selections are summed.

    Returns
    -------
    dict
        ``calm_mean_im``, ``static_calm_mean_im`` and ``ratio`` (policy / static; below 1:
        capital released in calm regimes).

    Examples
    --------
    >>> out = calm_capital(np.array([1.0, 2.0, 9.0]), np.array([2.0, 2.0, 2.0]),
    ...                    np.array([0.1, 0.5, 0.9]))
    >>> out["calm_mean_im"], out["ratio"]
    (1.0, 0.5)
    """
    policy = np.atleast_2d(np.asarray(im, dtype=float))
    static = np.atleast_2d(np.asarray(static_im, dtype=float))
    ranks = np.atleast_2d(np.asarray(vol, dtype=float))
    if not policy.shape == static.shape == ranks.shape:
        raise ReplayInputError(
            f"calm_capital: shapes differ: im {policy.shape}, static {static.shape}, "
            f"vol {ranks.shape}"
        )
    total = total_static = 0.0
    found = False
    for row_im, row_static, row_vol in zip(policy, static, ranks, strict=True):
        known = np.flatnonzero(np.isfinite(row_vol))
        if len(known) < 3:
            continue
        calm = known[np.argsort(row_vol[known], kind="stable")[: len(known) // 3]]
        total += float(np.mean(row_im[calm]))
        total_static += float(np.mean(row_static[calm]))
        found = True
    if not found:
        nan = float("nan")
        return {"calm_mean_im": nan, "static_calm_mean_im": nan, "ratio": nan}
    ratio = total / total_static if total_static > 0 else float("nan")
    return {"calm_mean_im": total, "static_calm_mean_im": total_static, "ratio": ratio}


def series_figures(
    run: ReplaySeries, static: ReplaySeries, vol: NDArray[np.float64], bars_per_hour: float
) -> dict[str, float]:
    """The procyclicality figures of one run against its static run (same seed).

    ``vol`` is the ranking volatility per bar (one row: the book's IM is a total over
    assets, so the caller passes the assets' mean trailing volatility). The book's IM in
    USD also moves with its open notional (it starts empty, so its peak-to-trough ratio is
    large for every policy); ``peak_to_trough_im_rate`` is the ratio of the IM per USD of
    open notional, the figure of a fixed portfolio.
    """
    im = np.asarray(run.initial_margin, dtype=float)
    notional = np.asarray(run.open_notional, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(notional > 0, im / notional, np.nan)
    day = max(1, round(DAY_WINDOW_HOURS * bars_per_hour))
    five = max(1, round(FIVE_DAY_WINDOW_HOURS * bars_per_hour))
    calm = calm_capital(im, np.asarray(static.initial_margin, dtype=float), vol)
    figures = {
        "peak_to_trough_im": peak_to_trough(im),
        "peak_to_trough_im_rate": peak_to_trough(rate),
        "largest_rise_im_24h_usd": largest_rise(im, day),
        "largest_rise_im_5d_usd": largest_rise(im, five),
        "calm_mean_im_usd": calm["calm_mean_im"],
        "calm_im_vs_static": calm["ratio"],
    }
    if run.initial_margin_asset is not None:
        # The figure the clearing literature quotes: an asset's own posted IM, max over assets.
        per_asset = np.asarray(run.initial_margin_asset, dtype=float)
        figures["largest_rise_asset_im_24h_usd"] = largest_rise(per_asset, day)
        figures["largest_rise_asset_im_5d_usd"] = largest_rise(per_asset, five)
    return figures


def replay_procyclicality(
    series: Mapping[str, Sequence[ReplaySeries]],
    equal_static: Mapping[str, Sequence[ReplaySeries]],
    multipliers: Mapping[str, NDArray[np.float64]],
    close: NDArray[np.float64],
    interval_ms: int,
    floor: float,
    cap: float,
) -> dict[str, Any]:
    """Every policy's ratchet and procyclicality figures, mean and std over seeds.

    Parameters
    ----------
    series
        Runs per policy (one per seed), ``static`` included.
    equal_static
        Per dynamic policy, the static runs at its mean margin (the calm-capital base);
        ``static`` itself is compared with itself.
    multipliers
        Per policy, the ``(n_assets, n_bars)`` multiplier path it replayed.
    close
        Closes ``(n_assets, n_bars)`` (the calm ranking's trailing volatility).
    interval_ms
        Bar length.
    floor, cap
        The dynamic policies' bounds (static's constant path is reported as is).

    Returns
    -------
    dict
        Per policy: ``ratchet`` (:func:`ratchet_diagnostics` of its multiplier path, with
        ``largest_rise_multiplier_24h`` and ``_5d`` per asset, max over assets) and per
        figure of :func:`series_figures` its ``mean`` and ``std`` over seeds.
    """
    bars_per_hour = 3_600_000 / interval_ms
    vol = trailing_realized_vol(close, max(2, round(DAY_WINDOW_HOURS * bars_per_hour)))
    ranking = _column_mean(np.atleast_2d(vol))
    day = max(1, round(DAY_WINDOW_HOURS * bars_per_hour))
    five = max(1, round(FIVE_DAY_WINDOW_HOURS * bars_per_hour))
    out: dict[str, Any] = {}
    for name, runs in series.items():
        path = multipliers.get(name)
        entry: dict[str, Any] = {}
        if path is not None:
            entry["ratchet"] = {
                **ratchet_diagnostics(path, floor, cap),
                "largest_rise_multiplier_24h": largest_rise(path, day),
                "largest_rise_multiplier_5d": largest_rise(path, five),
            }
        bases = equal_static.get(name, series.get("static", []))
        by_seed = {r.seed: r for r in bases}
        figures = [series_figures(r, by_seed[r.seed], ranking, bars_per_hour) for r in runs]
        for key in figures[0] if figures else ():
            values = np.array([f[key] for f in figures], dtype=float)
            entry[key] = {
                "mean": float(np.nanmean(values)) if np.isfinite(values).any() else None,
                "std": float(np.nanstd(values)) if np.isfinite(values).any() else None,
            }
        out[name] = entry
    return out


def _column_mean(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean of the finite values of each column (NaN where none), without warnings."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
