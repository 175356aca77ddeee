"""Price impact of liquidations, and the cascade it can start within a bar.

Liquidated longs are sold and liquidated shorts bought back into the market. Their net
notional ``Q`` in a bar moves the log price by the square-root law of market impact::

    impact = -sign(Q_long - Q_short) * Y * sigma_bar * sqrt(|Q_long - Q_short| / V_bar)

with ``V_bar`` the bar's real quote volume and ``sigma_bar`` the bar's volatility (a trailing
realized standard deviation of bar log returns, known at the bar's open). The form is
invariant to the bar length (``sigma`` scales with ``sqrt(T)``, ``V`` with ``T``), so
``Y`` is the daily coefficient of the literature.

The coefficient
---------------
``Y = 1.0`` by default, **taken from the literature, not estimated here**: the square-root law
``dP/P = Y sigma_d sqrt(Q / V_d)`` with ``Y`` of order one is the robust finding of Tóth et al.,
"Anomalous price impact and the critical nature of liquidity in financial markets",
Phys. Rev. X 1, 021006 (2011) (``Y ~ 0.5-1`` on futures), and Donier & Bonart, "A million
metaorder analysis of market impact on the Bitcoin", Market Microstructure and Liquidity 1(2)
(2015), who find the same law on BTC/USD over four decades of ``Q / V``. Liquidations are
market orders executed within a bar, faster than a metaorder, so ``Y = 1`` sits at the
upper end of the range; ``ImpactConfig.coefficient`` changes it, and the calibration of
issue #19 item 4 is where it should be fitted (it is not yet).

The cascade
-----------
Impact can cross further liquidation levels in the same bar, whose fills add impact. With a
``liquidate(offset)`` map from a per-asset log-price offset to the long and short notional
it liquidates, :func:`resolve_cascade` iterates ``offset = carried + impact(liquidate(offset))``
to a fixed point, at most ``max_rounds`` rounds (the last round's result is kept and the
result says whether it converged). On a one-sided book the map is monotone, so the iteration
climbs to the smallest fixed point and stops; it can never liquidate more than the book holds.

Decay
-----
The impact is transient: after the bar the offset decays toward the historical path as
``offset * 2 ** (-1 / half_life_bars)`` per bar (:func:`decay`), so the impacted market
returns onto the real bars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import ConfigError

IMPACT_MODES: tuple[str, ...] = ("off", "on")


@dataclass(frozen=True)
class ImpactConfig:
    """Parameters of liquidation price impact.

    Parameters
    ----------
    coefficient : float
        ``Y`` of the square-root law (1.0, from the literature: see the module docstring).
        0 switches impact off exactly.
    vol_window : int
        Bars of the trailing realized volatility ``sigma_bar`` (24).
    half_life_bars : float
        Half-life of the impact's decay back onto the historical path, in bars (1.0).
    max_rounds : int
        Cap on the rounds of a cascade within one bar (20).
    max_impact : float
        Largest absolute log-price impact of one bar (0.5): a guard against a book far larger
        than the market's volume, not a modelling choice.
    floor : float
        A decayed offset below this (absolute, log) is gone: it is set to zero, so the
        market is back on the historical path to the micro-USD below about 1 000 USD per
        unit (1e-9).
    """

    coefficient: float = 1.0
    vol_window: int = 24
    half_life_bars: float = 1.0
    max_rounds: int = 20
    max_impact: float = 0.5
    floor: float = 1e-9

    def __post_init__(self) -> None:
        checks = [
            (np.isfinite(self.coefficient) and self.coefficient >= 0, "coefficient must be >= 0"),
            (self.vol_window >= 2, "vol_window must be >= 2"),
            (self.half_life_bars > 0, "half_life_bars must be > 0"),
            (self.max_rounds >= 1, "max_rounds must be >= 1"),
            (0 < self.max_impact < 5, "max_impact must be in (0, 5)"),
            (0 <= self.floor < self.max_impact, "floor must be in [0, max_impact)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"ImpactConfig: {message}")


def bar_sigma(close: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Trailing realized std of bar log returns, known at each bar's open (shape of ``close``).

    ``sigma[:, t]`` uses the returns of bars ``t - window .. t - 1`` only (point in time); the
    first bars use what history there is, and bar 0 gets 0.
    """
    logp = np.log(close)
    r = np.diff(logp, axis=-1, prepend=logp[..., :1])
    sq = np.cumsum(r**2, axis=-1)
    cnt = np.arange(1, close.shape[-1] + 1, dtype=np.float64)
    # Sum of squared returns of bars [t - window, t - 1]: cumsum to t-1 minus cumsum to t-window-1.
    upto = np.concatenate([np.zeros((*close.shape[:-1], 1)), sq[..., :-1]], axis=-1)
    lagged = np.concatenate(
        [np.zeros((*close.shape[:-1], window)), upto[..., : max(close.shape[-1] - window, 0)]],
        axis=-1,
    )[..., : close.shape[-1]]
    n = np.minimum(cnt - 1, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 0, (upto - lagged) / np.maximum(n, 1), 0.0)
    return np.sqrt(np.maximum(var, 0.0))


def impact(
    long_notional: NDArray[np.float64],
    short_notional: NDArray[np.float64],
    volume: NDArray[np.float64],
    sigma: NDArray[np.float64],
    config: ImpactConfig,
) -> NDArray[np.float64]:
    """Log-price impact of liquidated notional (USD) against the bar's quote volume (USD).

    Long liquidations sell (the price falls), short ones buy (it rises); only the net flow
    moves the price. A bar without volume takes the largest impact allowed.
    """
    net = np.asarray(short_notional, dtype=np.float64) - np.asarray(long_notional, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(volume > 0, np.abs(net) / np.where(volume > 0, volume, 1.0), np.inf)
    size = config.coefficient * sigma * np.sqrt(ratio)
    size = np.where(
        net == 0, 0.0, np.minimum(np.nan_to_num(size, nan=0.0, posinf=np.inf), config.max_impact)
    )
    return np.sign(net) * size


@dataclass(frozen=True)
class Cascade:
    """Result of :func:`resolve_cascade` for one bar (arrays per asset).

    Attributes
    ----------
    offset : float array
        Log-price offset of the bar after the cascade (carried + this bar's impact).
    long_notional, short_notional : float array
        Notional liquidated at that offset (USD).
    rounds : int
        Rounds run.
    converged : bool
        Whether the last round changed nothing (False: stopped at ``max_rounds``).
    """

    offset: NDArray[np.float64]
    long_notional: NDArray[np.float64]
    short_notional: NDArray[np.float64]
    rounds: int
    converged: bool


Liquidator = Callable[[NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]]


def resolve_cascade(
    liquidate: Liquidator,
    carried: NDArray[np.float64],
    volume: NDArray[np.float64],
    sigma: NDArray[np.float64],
    config: ImpactConfig,
) -> Cascade:
    """Iterate ``offset = carried + impact(liquidate(offset))`` to a fixed point (capped).

    Parameters
    ----------
    liquidate : callable
        ``liquidate(offset) -> (long_notional, short_notional)``: the notional (USD, per asset)
        the bar liquidates when its path is shifted by ``offset`` in log price. It must be a
        pure function of ``offset``.
    carried : float array
        Offset carried from earlier bars (already decayed), per asset.
    volume, sigma : float arrays
        The bar's quote volume and volatility per asset.
    config : ImpactConfig

    Returns
    -------
    Cascade
    """
    offset = np.asarray(carried, dtype=np.float64).copy()
    long_q, short_q = liquidate(offset)
    if config.coefficient == 0:
        return Cascade(offset, long_q, short_q, 1, True)
    for rounds in range(1, config.max_rounds + 1):
        new = carried + impact(long_q, short_q, volume, sigma, config)
        if np.array_equal(new, offset):
            return Cascade(offset, long_q, short_q, rounds, True)
        offset = new
        long_q, short_q = liquidate(offset)
    return Cascade(offset, long_q, short_q, config.max_rounds, False)


def decay(offset: NDArray[np.float64], config: ImpactConfig, bars: int = 1) -> NDArray[np.float64]:
    """The offset ``bars`` bars later: it decays back onto the historical path (and is
    exactly zero once below ``config.floor``)."""
    out = offset * 2.0 ** (-bars / config.half_life_bars)
    return np.where(np.abs(out) < config.floor, 0.0, out)


def shifted(prices_micro: NDArray[np.int64], offset: NDArray[np.float64]) -> NDArray[np.int64]:
    """Integer micro-USD prices moved by a log offset (broadcast over trailing axes).

    A zero offset returns the prices unchanged, to the unit (impact off is the exogenous path).
    """
    factor = np.exp(np.asarray(offset, dtype=np.float64))
    factor = factor.reshape(factor.shape + (1,) * (prices_micro.ndim - factor.ndim))
    moved = np.round(prices_micro * factor).astype(np.int64)
    return np.where(factor == 1.0, prices_micro, np.maximum(moved, 1))


def book_liquidator(
    asset: NDArray[np.int64],
    long_: NDArray[np.bool_],
    level: NDArray[np.int64],
    notional: NDArray[np.float64],
    low: NDArray[np.int64],
    high: NDArray[np.int64],
) -> Liquidator:
    """The ``liquidate`` map of a set of positions facing one bar's extremes.

    A long is liquidated when the shifted low reaches its level, a short when the shifted
    high does; the map returns the notional (USD, at the level) liquidated per asset. For the
    whole-path replay the same map is built on each bar's path; this extreme-based form is
    the cascade's core and its property tests' subject.
    """
    n_assets = len(low)

    def liquidate(offset: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lo = shifted(low, offset)[asset]
        hi = shifted(high, offset)[asset]
        hit = np.where(long_, lo <= level, hi >= level)
        longs = np.bincount(asset[hit & long_], weights=notional[hit & long_], minlength=n_assets)
        shorts = np.bincount(
            asset[hit & ~long_], weights=notional[hit & ~long_], minlength=n_assets
        )
        return longs.astype(np.float64), shorts.astype(np.float64)

    return liquidate
