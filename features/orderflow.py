"""Order-flow and liquidity features from klines (taker volumes, trade counts, ranges).

Inputs are one asset's arrays on its complete grid (see :func:`features.volatility.complete_grid`);
a missing bar is NaN and counts as missing in every window (same min-valid rule as
:mod:`features.volatility`). Every value at bar ``t`` uses bars up to ``t`` only.

Signed flow uses Binance's taker-buy volume: a taker buy lifts the ask, so signed volume
is ``taker_buy - taker_sell = 2 * taker_buy - volume``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.volatility import FloatArray, rolling_covariance, window_mean, window_total

__all__ = [
    "amihud_illiquidity",
    "average_trade_size",
    "corwin_schultz_spread",
    "cumulative_volume_delta",
    "kyle_lambda",
    "roll_spread",
    "signed_volume",
    "taker_imbalance",
    "trade_surprise",
    "vpin_bvc",
    "window_taker_imbalance",
]

_CS_DENOMINATOR = 3.0 - 2.0 * math.sqrt(2.0)
_erf = np.frompyfunc(math.erf, 1, 1)


def taker_imbalance(volume: FloatArray, taker_buy_volume: FloatArray) -> FloatArray:
    """Per-bar taker imbalance ``(buy - sell) / volume`` in [-1, 1]; NaN on zero volume."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (2.0 * taker_buy_volume - volume) / volume
    return np.where(volume > 0, out, np.nan)


def window_taker_imbalance(
    volume: FloatArray, taker_buy_volume: FloatArray, window: int, min_valid: int
) -> FloatArray:
    """Volume-weighted taker imbalance over the window: ``sum(buy - sell) / sum(volume)``."""
    signed = window_mean(2.0 * taker_buy_volume - volume, window, min_valid)
    total = window_mean(volume, window, min_valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, signed / total, np.nan)


def signed_volume(quote_volume: FloatArray, taker_buy_quote_volume: FloatArray) -> FloatArray:
    """Signed quote (dollar) volume of the bar: taker buys minus taker sells."""
    return 2.0 * taker_buy_quote_volume - quote_volume


def cumulative_volume_delta(signed: FloatArray, window: int, min_valid: int) -> FloatArray:
    """Cumulative volume delta over the trailing window (not since inception: stationary)."""
    return window_total(signed, window, min_valid)


def trade_surprise(trades: FloatArray, window: int, min_valid: int) -> FloatArray:
    """``log((trades_t + 1) / (mean trades over the previous window + 1))``.

    The baseline excludes bar ``t`` so a burst of activity is measured against the
    history it interrupts.
    """
    baseline = np.full(trades.shape, np.nan)
    if trades.size > 1:
        baseline[1:] = window_mean(trades, window, min_valid)[:-1]
    return np.log1p(trades) - np.log1p(baseline)


def average_trade_size(
    quote_volume: FloatArray, trades: FloatArray, window: int, min_valid: int
) -> FloatArray:
    """Quote volume per trade over the window, ``sum(quote_volume) / sum(trades)``."""
    volume = window_mean(quote_volume, window, min_valid)
    count = window_mean(np.where(np.isnan(quote_volume), np.nan, trades), window, min_valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, volume / count, np.nan)


def amihud_illiquidity(
    ret: FloatArray, quote_volume: FloatArray, window: int, min_valid: int, scale: float = 1e6
) -> FloatArray:
    """Amihud (2002): mean of ``|ret| / (quote_volume / scale)`` over the window.

    With ``scale = 1e6`` it is the absolute return per million of quote volume. Bars with
    zero volume are missing, not infinite.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(ret) / (quote_volume / scale)
    ratio = np.where(quote_volume > 0, ratio, np.nan)
    return window_mean(ratio, window, min_valid)


def kyle_lambda(
    ret: FloatArray, signed_flow: FloatArray, window: int, min_valid: int
) -> FloatArray:
    r"""Kyle's lambda: trailing OLS slope of ``ret`` on signed flow (with an intercept).

    :math:`\lambda_t = \mathrm{cov}(r, s) / \mathrm{var}(s)` over the window's valid
    pairs, from rolling sums, so the cost is O(n) for any window. The unit is return per
    unit of ``signed_flow`` (pass dollars / 1e6 for "per million").
    """
    cov, var_flow, _ = rolling_covariance(signed_flow, ret, window, min_valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var_flow > 0, cov / var_flow, np.nan)


def roll_spread(ret: FloatArray, window: int, min_valid: int) -> FloatArray:
    r"""Roll (1984) effective spread :math:`2\sqrt{-\mathrm{cov}(r_t, r_{t-1})}`.

    Where the autocovariance is non-negative the model implies no bounce and the estimate
    is 0 (the usual convention), not NaN.
    """
    lagged = np.full(ret.shape, np.nan)
    if ret.size > 1:
        lagged[1:] = ret[:-1]
    cov, _, _ = rolling_covariance(ret, lagged, window, min_valid)
    return np.where(np.isnan(cov), np.nan, 2.0 * np.sqrt(np.maximum(-cov, 0.0)))


def corwin_schultz_spread(
    high: FloatArray, low: FloatArray, window: int, min_valid: int
) -> FloatArray:
    r"""Corwin-Schultz (2012) high-low spread, averaged over the window.

    Per bar pair :math:`(t-1, t)`: :math:`\beta = \ln^2(H_t/L_t) + \ln^2(H_{t-1}/L_{t-1})`,
    :math:`\gamma = \ln^2(\max H / \min L)`,
    :math:`\alpha = \frac{\sqrt{2\beta}-\sqrt\beta}{3-2\sqrt2} - \sqrt{\gamma/(3-2\sqrt2)}`,
    :math:`S = 2(e^\alpha-1)/(1+e^\alpha)`; negative estimates are set to 0 as in the
    paper. No overnight adjustment: the market trades around the clock.
    """
    hl = np.log(high / low)
    beta = np.full(high.shape, np.nan)
    gamma = np.full(high.shape, np.nan)
    if high.size > 1:
        beta[1:] = hl[1:] ** 2 + hl[:-1] ** 2
        two_bar = np.log(np.maximum(high[1:], high[:-1]) / np.minimum(low[1:], low[:-1]))
        gamma[1:] = two_bar**2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _CS_DENOMINATOR - np.sqrt(
        gamma / _CS_DENOMINATOR
    )
    spread = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    spread = np.where(np.isnan(spread), np.nan, np.maximum(spread, 0.0))
    return window_mean(spread, window, min_valid)


def vpin_bvc(
    ret: FloatArray,
    volume: FloatArray,
    window: int,
    sigma_window: int,
    min_valid: int,
    min_valid_sigma: int,
) -> FloatArray:
    r"""VPIN with bulk volume classification on time bars, in [0, 1].

    Each bar's volume is split as buy :math:`V\Phi(r_t/\sigma_t)` and sell
    :math:`V(1-\Phi(r_t/\sigma_t))` (Easley, Lopez de Prado, O'Hara 2012), where
    :math:`\sigma_t` is the trailing standard deviation of returns over ``sigma_window``
    bars up to ``t`` (past-only; the paper's full-sample sigma would look ahead). Then
    :math:`VPIN = \sum V|2\Phi - 1| / \sum V` over ``window`` bars. Time bars stand in for
    the paper's volume buckets, which klines cannot split exactly.
    """
    sigma = pd.Series(ret).rolling(sigma_window, min_periods=max(min_valid_sigma, 2)).std()
    sigma = sigma.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, ret / sigma, np.nan)
    imbalance = np.abs(_erf(z / math.sqrt(2.0)).astype("float64"))  # |2 Phi(z) - 1|
    valid = ~np.isnan(imbalance) & ~np.isnan(volume)
    flow = np.where(valid, volume * imbalance, np.nan)
    total = np.where(valid, volume, np.nan)
    flow_mean = window_mean(flow, window, min_valid)
    total_mean = window_mean(total, window, min_valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total_mean > 0, flow_mean / total_mean, np.nan)
    # Rolling sums may leave a last-ulp excess; the ratio is a fraction by construction.
    return np.clip(out, 0.0, 1.0)
