"""A market-aware book of perpetual traders: who enters, on which side, how levered, and when
they leave respond to the market they trade in.

:mod:`liquidation.trader_book` draws today's book: arrivals uniform over time, the side a
coin flip, leverage from a fixed distribution. Nothing there responds to trend, funding or
volatility, so leverage never builds up in a calm rally. This module draws a
:class:`~liquidation.trader_book.TraderBook` of the same shape (the replay takes either one
unchanged) from three point-in-time signals of each asset, known at each bar's open (bars
``< t`` only):

* ``trend``: the log return of the last ``trend_hours``, in units of its own volatility
  (``sigma_bar * sqrt(window)``), clipped to ``[-4, 4]``;
* ``vol``: ``log(sigma_short / sigma_long)`` of trailing realized volatilities over
  ``vol_short_hours`` and ``vol_long_hours``;
* ``funding``: the trailing ``funding_hours`` mean funding rate per 8 h, in basis points,
  minus the neutral 1 bp (positive when longs pay, i.e. longs crowd).

Behaviour (parameters in :class:`MarketBookConfig`, defaults from ``scripts/estimate_book.py``):

* **entry rate**: arrivals in bar ``t`` of asset ``a`` are Poisson with mean
  ``rate0 * w_a * exp(rate_trend * |trend| + rate_vol * vol + rate_funding * funding)``,
  where ``rate0`` makes the expected count ``n_traders`` on a signal-free market (so the
  realized count responds to the market and is not fixed);
* **side**: long with probability ``sigmoid(logit(long_fraction) + side_trend * trend +
  side_funding * funding)``;
* **leverage**: the legacy Pareto draw, its scale multiplied by ``exp(lev_level + lev_vol *
  vol + lev_trend * side * trend)`` (the signs are the data's: see :class:`MarketBookConfig`;
  ``lev_level`` is fitted to real liquidations as a share of open interest by
  ``scripts/fit_book.py``), capped to ``[1, leverage_max]``;
* **exits** besides the planned holding time (log-normal as in the legacy book, its median
  multiplied by ``exp(hold_level)``, fitted with ``lev_level``): a
  ``stop_fraction`` of traders set a stop-loss at a return on equity of ``-stop_loss_roe``, a
  ``target_fraction`` a take-profit at ``+take_profit_roe``, and a ``derisk_fraction`` close
  after a drawdown of ``derisk_drawdown_roe`` from the position's best bar close. Each exit
  is decided on the bar closes of the historical path and shortens ``hold_bars`` (the replay
  closes a position at the close of its last bar; a liquidation earlier in the path wins);
* **size, collateral and top-ups** as in the legacy book (the same
  :class:`~liquidation.trader_book.BookConfig`, passed beside this config): the data say
  nothing about collateral and top-ups.

Everything is seeded (one ``numpy.random.default_rng(seed)``) and vectorized; the exits are
resolved in chunks of ``EXIT_CHUNK`` traders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import ConfigError
from liquidation.trader_book import BookConfig, TraderBook

BOOKS: tuple[str, ...] = ("legacy", "market")
"""Trader books the replay can draw: today's (:mod:`liquidation.trader_book`) or this one."""

#: Traders whose exits are resolved at once (bounds the memory of the exit scan).
EXIT_CHUNK = 4_096
#: Funding rate per 8 h that counts as neutral (the venues' default interest component), bps.
NEUTRAL_FUNDING_BPS = 1.0


@dataclass(frozen=True)
class MarketBookConfig:
    """Parameters of the market-aware book (see the module docstring for the model).

    The behavioural coefficients' defaults are the output of ``scripts/estimate_book.py`` on
    the fit period (2021-05 .. 2022-12) of ``../shared/data``, whatever their sign: on BTC
    the entry rate rises with volatility and with the size of the trend, the book leans
    *against* the trend (contrarian: the long share of liquidations falls after a rise, given
    the day's move), and the liquidated share of open interest rises in a volatile regime
    (read as leverage that does *not* fall with volatility; the proxy is weak, see the
    script). ``lev_trend``, the exit thresholds and shares are not identified by those data
    and keep neutral values until the calibration of issue #19 item 4 fits them.

    Parameters
    ----------
    trend_hours, vol_short_hours, vol_long_hours, funding_hours : float
        Windows of the signals.
    rate_trend, rate_vol, rate_funding : float
        Log-intensity responses of the entry rate to ``|trend|``, ``vol`` and ``funding``.
    side_trend, side_funding : float
        Logit responses of the long probability to ``trend`` and ``funding``.
    lev_level : float
        Log shift of the leverage scale against the legacy book's (``BookConfig.leverage_min``),
        fitted by ``scripts/fit_book.py`` so that the book's liquidations as a share of its
        open interest match Binance's on the fit period (BTC 2021-05..2022-12 and ETH 2022,
        the days with open interest: 2022). Leverage below 1 is capped to 1.
    hold_level : float
        Log shift of the planned holding time against the legacy book's
        (``BookConfig.hold_median_hours``; still capped at ``hold_max_hours``), fitted with
        ``lev_level`` by ``scripts/fit_book.py``.
    lev_vol, lev_trend : float
        Log responses of the leverage scale to ``vol`` and to the trend in the trader's
        direction.
    stop_fraction, stop_loss_roe : float
        Share of traders with a stop-loss, and its loss as a fraction of equity.
    target_fraction, take_profit_roe : float
        Share with a take-profit, and its gain as a fraction of equity.
    derisk_fraction, derisk_drawdown_roe : float
        Share who close after a drawdown from the position's best close, and its size.
    """

    trend_hours: float = 24.0
    vol_short_hours: float = 24.0
    vol_long_hours: float = 24.0 * 30
    funding_hours: float = 72.0
    # Estimated by scripts/estimate_book.py (BTC, 2021-05 .. 2022-12; its --check keeps them
    # equal to its output at two decimals). Standard errors: 0.008, 0.013, 0.004, 0.020, 0.018,
    # 0.033. Funding's responses are within two standard errors of zero.
    rate_trend: float = 0.13
    rate_vol: float = 0.48
    rate_funding: float = 0.0
    side_trend: float = -0.06
    side_funding: float = -0.03
    lev_vol: float = 0.25
    # Fitted by scripts/fit_book.py (liquidations / open interest, BTC and ETH 2022, and the
    # fit period's correlation; its --check keeps them equal to its output at two decimals).
    # At a neutral volatility the leverage scale 4 x exp(-2.52) = 0.32 is capped to 1x: about
    # 26% of positions above 1x, 1.6% above 10x; most holds reach the 30-day cap (median
    # 24 h x exp(4.5)). A book shaped like open interest, not like retail churn.
    lev_level: float = -2.52
    hold_level: float = 4.5
    # Not identified by the data (see scripts/estimate_book.py): neutral until item 4 fits it.
    lev_trend: float = 0.0
    stop_fraction: float = 0.3
    stop_loss_roe: float = 0.5
    target_fraction: float = 0.3
    take_profit_roe: float = 1.0
    derisk_fraction: float = 0.2
    derisk_drawdown_roe: float = 0.5

    def __post_init__(self) -> None:
        checks = [
            (self.trend_hours > 0 and self.funding_hours > 0, "windows must be > 0"),
            (0 < self.vol_short_hours < self.vol_long_hours, "need 0 < vol_short < vol_long"),
            (
                all(
                    np.isfinite(v)
                    for v in (
                        self.rate_trend,
                        self.rate_vol,
                        self.rate_funding,
                        self.side_trend,
                        self.side_funding,
                        self.lev_level,
                        self.hold_level,
                        self.lev_vol,
                        self.lev_trend,
                    )
                ),
                "coefficients must be finite",
            ),
            (
                all(
                    0 <= v <= 1
                    for v in (self.stop_fraction, self.target_fraction, self.derisk_fraction)
                ),
                "exit shares must be in [0, 1]",
            ),
            (
                min(self.stop_loss_roe, self.take_profit_roe, self.derisk_drawdown_roe) > 0,
                "exit thresholds must be > 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"MarketBookConfig: {message}")

    def describe(self) -> dict[str, Any]:
        """JSON-able form (for reports and run tracking)."""
        return asdict(self)


@dataclass(frozen=True)
class Signals:
    """Point-in-time signals per asset and bar (shape ``(n_assets, n_bars)``), known at the
    bar's open."""

    trend: NDArray[np.float64]
    vol: NDArray[np.float64]
    funding: NDArray[np.float64]


def _trailing_sum(x: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Sum of ``x[..., t - window : t]`` (bars strictly before ``t``), zero-padded."""
    c = np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(x, axis=-1)], axis=-1)
    t = np.arange(x.shape[-1])
    lo = np.maximum(t - window, 0)
    return c[..., t] - c[..., lo]


def signals(
    close: NDArray[np.float64],
    funding_rate: NDArray[np.float64],
    bar_hours: float,
    config: MarketBookConfig,
) -> Signals:
    """The book's signals from bar closes and settled funding (point in time, see module).

    Parameters
    ----------
    close, funding_rate : arrays ``(n_assets, n_bars)``
        Bar closes and the funding rate settled at each bar's open (0 where none).
    bar_hours : float
        Bar length in hours.
    config : MarketBookConfig
    """
    if close.shape != funding_rate.shape or close.ndim != 2:
        raise ConfigError("signals needs close and funding_rate of one (n_assets, n_bars) shape")
    if not np.all(np.isfinite(close) & (close > 0)):
        raise ConfigError("signals needs finite, positive closes")
    logp = np.log(close)
    r = np.diff(logp, axis=-1, prepend=logp[..., :1])
    # r[t] is the return of bar t, known at its close: bars < t are r[:t].

    def win(hours: float) -> int:
        return max(1, round(hours / bar_hours))

    w_tr, w_s, w_l, w_f = (
        win(config.trend_hours),
        win(config.vol_short_hours),
        win(config.vol_long_hours),
        win(config.funding_hours),
    )
    n_s = np.minimum(np.arange(close.shape[-1]), w_s).astype(np.float64)
    n_l = np.minimum(np.arange(close.shape[-1]), w_l).astype(np.float64)
    var_s = _trailing_sum(r**2, w_s) / np.maximum(n_s, 1)
    var_l = _trailing_sum(r**2, w_l) / np.maximum(n_l, 1)
    floor = 1e-12
    vol = 0.5 * np.log((var_s + floor) / (var_l + floor))
    vol = np.where(n_s >= 2, vol, 0.0)
    move = _trailing_sum(r, w_tr)
    scale = np.sqrt(var_l * w_tr)
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = np.where(scale > 0, move / np.where(scale > 0, scale, 1.0), 0.0)
    trend = np.clip(np.where(n_l >= 2, trend, 0.0), -4.0, 4.0)
    n_f = np.minimum(np.arange(close.shape[-1]), w_f).astype(np.float64)
    # Mean rate per 8 h over the window: settled sum over the window's hours, times 8.
    per8h_bps = _trailing_sum(funding_rate, w_f) * 8.0 / np.maximum(n_f * bar_hours, bar_hours)
    funding = np.where(n_f > 0, per8h_bps * 1e4 - NEUTRAL_FUNDING_BPS, 0.0)
    funding = np.clip(funding, -20.0, 20.0)
    return Signals(trend=trend, vol=np.clip(vol, -3.0, 3.0), funding=funding)


def draw_market_book(
    config: MarketBookConfig,
    book: BookConfig,
    close: NDArray[np.float64],
    funding_rate: NDArray[np.float64],
    seed: int,
    bar_hours: float = 1.0,
    open_: NDArray[np.float64] | None = None,
    asset_weights: NDArray[np.float64] | None = None,
) -> TraderBook:
    """Draw the market-aware book of one seed on a market's bars.

    Parameters
    ----------
    config : MarketBookConfig
        The market responses.
    book : BookConfig
        Size (expected ``n_traders``), side base rate, collateral, leverage tail, holding
        time and top-ups: the legacy book's parameters, shared by both books.
    close, funding_rate : arrays ``(n_assets, n_bars)``
        The replay market's closes and funding (:class:`~liquidation.simulate.MarketPaths`).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed and market give the same book.
    bar_hours : float
        Bar length in hours.
    open_ : array, optional
        Bar opens (a position opens at its arrival bar's open; default: the previous close).
    asset_weights : array, optional
        Relative asset weights, used when ``book.volume_weighted_assets``.

    Returns
    -------
    TraderBook
        Sorted by arrival bar, as :func:`liquidation.trader_book.draw_book`'s.
    """
    base = book
    n_assets, n_bars = close.shape
    if n_bars < 1 or n_assets < 1:
        raise ConfigError("draw_market_book needs at least one bar and one asset")
    sig = signals(close, funding_rate, bar_hours, config)
    rng = np.random.default_rng(seed)
    if base.volume_weighted_assets and asset_weights is not None:
        w = np.asarray(asset_weights, dtype=np.float64)
        w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
        w = w / w.sum() if w.sum() > 0 else np.full(n_assets, 1.0 / n_assets)
    else:
        w = np.full(n_assets, 1.0 / n_assets)
    log_rate = (
        config.rate_trend * np.abs(sig.trend)
        + config.rate_vol * sig.vol
        + config.rate_funding * sig.funding
    )
    mean = base.n_traders / n_bars * w[:, None] * np.exp(np.clip(log_rate, -10.0, 5.0))
    counts = rng.poisson(mean)
    # Arrivals ordered by bar, then asset (the replay sorts by arrival only).
    flat = counts.T.ravel()  # (bar, asset) order
    cell = np.repeat(np.arange(flat.size), flat)
    arrival = (cell // n_assets).astype(np.int64)
    asset = (cell % n_assets).astype(np.int64)
    n = len(arrival)
    trend = sig.trend[asset, arrival]
    vol = sig.vol[asset, arrival]
    funding = sig.funding[asset, arrival]
    p0 = np.clip(base.long_fraction, 1e-6, 1 - 1e-6)
    logit = np.log(p0 / (1 - p0)) + config.side_trend * trend + config.side_funding * funding
    side = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-logit)), 1, -1).astype(np.int8)
    collateral = base.collateral_median_usd * np.exp(base.collateral_sigma * rng.standard_normal(n))
    scale = base.leverage_min * np.exp(
        config.lev_level + config.lev_vol * vol + config.lev_trend * side * trend
    )
    leverage = scale * (1.0 - rng.random(n)) ** (-1.0 / base.leverage_tail)
    leverage = np.clip(leverage, 1.0, base.leverage_max)
    hours = base.hold_median_hours * np.exp(
        config.hold_level + base.hold_sigma * rng.standard_normal(n)
    )
    hours = np.minimum(hours, base.hold_max_hours)
    hold = np.maximum(1, np.round(hours / bar_hours)).astype(np.int64)
    topup = rng.random(n) < base.topup_fraction
    stop = rng.random(n) < config.stop_fraction
    target = rng.random(n) < config.target_fraction
    derisk = rng.random(n) < config.derisk_fraction
    entry = open_[asset, arrival] if open_ is not None else close[asset, np.maximum(arrival - 1, 0)]
    hold = exit_bars(
        close, asset, arrival, side, leverage, entry, hold, stop, target, derisk, config
    )
    return TraderBook(
        arrival=arrival,
        asset=asset,
        side=side,
        collateral=collateral,
        leverage=leverage,
        hold_bars=hold,
        topup=topup,
    )


def exit_bars(
    close: NDArray[np.float64],
    asset: NDArray[np.int64],
    arrival: NDArray[np.int64],
    side: NDArray[np.int8],
    leverage: NDArray[np.float64],
    entry: NDArray[np.float64],
    hold: NDArray[np.int64],
    stop: NDArray[np.bool_],
    target: NDArray[np.bool_],
    derisk: NDArray[np.bool_],
    config: MarketBookConfig,
) -> NDArray[np.int64]:
    """Holding period in bars after the exits: the first bar close (counted from the arrival
    bar, 1-based) at which a trader's stop, target or de-risking rule fires, or the planned
    ``hold`` if none fires first. The return on equity is ``side * (close / entry - 1) *
    leverage`` on the historical closes."""
    n_bars = close.shape[1]
    out = hold.copy()
    rules = stop | target | derisk
    todo = np.flatnonzero(rules)
    for lo in range(0, len(todo), EXIT_CHUNK):
        rows = todo[lo : lo + EXIT_CHUNK]
        h = int(hold[rows].max())
        j = np.arange(h)
        idx = arrival[rows, None] + j[None, :]
        live = (j[None, :] < hold[rows, None]) & (idx < n_bars)
        px = close[asset[rows, None], np.minimum(idx, n_bars - 1)]
        roe = side[rows, None] * (px / entry[rows, None] - 1.0) * leverage[rows, None]
        fire = np.zeros_like(live)
        fire |= stop[rows, None] & (roe <= -config.stop_loss_roe)
        fire |= target[rows, None] & (roe >= config.take_profit_roe)
        best = np.maximum.accumulate(np.where(live, roe, -np.inf), axis=1)
        fire |= derisk[rows, None] & (best - roe >= config.derisk_drawdown_roe)
        fire &= live
        first = fire.argmax(axis=1)
        fired = fire.any(axis=1)
        out[rows] = np.where(fired, first + 1, hold[rows])
    return out
