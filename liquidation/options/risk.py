"""Portfolio margin of perpetuals and options together: the worst loss over a joint grid.

A scenario moves every underlying's price along a joint direction of the correlation matrix
(the same unit-sigma directions as perpetual portfolio margin,
:func:`liquidation.portfolio.scenario_directions`) by ``p`` horizon sigmas, and shifts every
implied vol by ``v * vol_shock_scale * sigma_annual``. Both scales come from the published
forecast: the price axis from the horizon sigma (times the margin multiplier, floored by the
stress sigma), the vol axis from the same forecast annualised. Options are repriced with
Black-76 at the shocked forward and vol (sticky strike, same expiry: no theta credit).

For a book with perpetual notionals ``d`` (USD, signed) and option quantities ``q``:

``loss(s) = -(d . r(s) + q . dV(s)) + liquidity`` and
``MM = max(max_s loss(s), short-option minimum)``, ``IM = initial_factor * MM``.

``liquidity`` is the close-out cost from the snapshot's liquidity metrics: the underlying's
cost fraction on ``|d|`` and on each option's delta-equivalent notional, plus
``option_vol_spread`` per unit of vega. Netting is exact: a delta-hedged book loses only its
gamma and vega in a scenario, and correlated underlyings offset along the joint directions.
Since ``max(a + b) <= max(a) + max(b)``, a hedged book never needs more than its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from liquidation.options import black76
from liquidation.options.config import OptionsMarginConfig
from liquidation.options.series import SeriesArrays
from liquidation.portfolio import scenario_directions

#: Lowest shocked forward as a fraction of today's (a -100% move has no Black-76 price).
MIN_FORWARD_FRACTION = 0.01


@dataclass(frozen=True)
class OptionsMarket:
    """Per-underlying inputs of option margin at one time, engine asset order.

    ``price`` is the mark (USD per unit); ``sigma_horizon`` the published horizon sigma times
    the margin multiplier (floored, as :class:`liquidation.scan.MarginArrays.sigma`);
    ``sigma_annual`` the same annualised (the scale of the vol shocks); ``forecast_vol`` the
    published forecast annualised without the multiplier (the mark vol without a surface);
    ``liquidity_cost`` the close-out cost fraction from the snapshot's spread and slippage;
    ``correlation`` the portfolio correlation.
    """

    ts_ms: int
    price: NDArray[np.float64]
    sigma_horizon: NDArray[np.float64]
    sigma_annual: NDArray[np.float64]
    forecast_vol: NDArray[np.float64]
    liquidity_cost: NDArray[np.float64]
    correlation: NDArray[np.float64]


@dataclass(frozen=True)
class Grid:
    """Scenario moves: simple returns and vol shifts, ``(n_assets, n_scenarios)`` each.

    Scenarios are ordered (vol level, price level, direction); ``shape`` is
    ``(n_vol_levels, n_price_levels, n_directions)``.
    """

    returns: NDArray[np.float64]
    vol_shift: NDArray[np.float64]
    shape: tuple[int, int, int]

    def group_max(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Max of ``values (..., n_scenarios)`` over the price levels of each
        (vol level, direction) group: ``(..., n_vol_levels * n_directions)``."""
        v, p, d = self.shape
        return (
            values.reshape(*values.shape[:-1], v, p, d)
            .max(axis=-2)
            .reshape(*values.shape[:-1], v * d)
        )

    @property
    def size(self) -> int:
        """Number of scenarios."""
        return self.returns.shape[1]


@dataclass(frozen=True)
class SeriesRisk:
    """Marks, Greeks and scenario PnL per unit of every listed series."""

    value: NDArray[np.float64]
    greeks: black76.Greeks
    pnl: NDArray[np.float64]  # (n_series, n_scenarios)
    liquidity: NDArray[np.float64]  # close-out cost per unit held
    short_minimum: NDArray[np.float64]  # short-option minimum per unit short


@dataclass(frozen=True)
class Requirement:
    """One book's margin, USD: grid loss, short-option minimum, maintenance, initial."""

    worst_loss: float
    short_minimum: float
    maintenance: float
    initial: float
    worst_scenario: int


def build_grid(market: OptionsMarket, config: OptionsMarginConfig) -> Grid:
    """The joint price x vol grid, scenario order (vol level, price level, direction)."""
    # Duplicate directions (with an identity correlation the principal components are the
    # columns themselves) add cost and no scenario: keep each once.
    directions = np.unique(scenario_directions(market.correlation).round(12), axis=1)  # (n, D)
    levels = np.asarray(config.price_levels, dtype=np.float64)
    vols = np.asarray(config.vol_levels, dtype=np.float64)
    n, d = directions.shape
    moves = levels[:, None, None] * directions[None, :, :]  # (P, n, D)
    moves = moves.transpose(1, 0, 2).reshape(n, -1) * market.sigma_horizon[:, None]  # (n, P*D)
    returns = np.tile(moves, (1, len(vols)))
    shift = np.repeat(vols, len(levels) * d)[None, :] * (
        config.vol_shock_scale * market.sigma_annual[:, None]
    )
    return Grid(
        returns=returns,
        vol_shift=np.broadcast_to(shift, returns.shape).copy(),
        shape=(len(vols), len(levels), d),
    )


def series_risk(
    series: SeriesArrays,
    vols: NDArray[np.float64],
    market: OptionsMarket,
    grid: Grid,
    config: OptionsMarginConfig,
) -> SeriesRisk:
    """Price every series now and in every scenario (one Black-76 call over the grid).

    Parameters
    ----------
    series : SeriesArrays
    vols : ndarray, shape (n_series,)
        Implied vol of each series now (from its underlying's surface).
    market, grid, config
    """
    a = series.asset
    forward = market.price[a]
    years = series.years(market.ts_ms)
    greeks = black76.greeks(forward, series.strike, years, vols, series.is_call)
    pnl = np.empty((len(a), grid.size))
    for asset in np.unique(a):
        rows = np.flatnonzero(a == asset)
        # An underlying sees few distinct (return, vol shift) pairs among the scenarios
        # (its own move along each direction): price those once and fan them out.
        moves, inverse = np.unique(
            np.stack([grid.returns[asset], grid.vol_shift[asset]]), axis=1, return_inverse=True
        )
        shocked_f = forward[rows, None] * np.maximum(1.0 + moves[0], MIN_FORWARD_FRACTION)
        shocked_v = np.maximum(vols[rows, None] + moves[1], config.min_vol)
        scenario = black76.price(
            shocked_f,
            series.strike[rows, None],
            years[rows, None],
            shocked_v,
            series.is_call[rows, None],
        )
        pnl[rows] = (scenario - greeks.price[rows, None])[:, inverse.ravel()]
    liquidity = (
        np.abs(greeks.delta) * forward * market.liquidity_cost[a]
        + greeks.vega * config.option_vol_spread
    )
    live = years > 0
    return SeriesRisk(
        value=greeks.price,
        greeks=greeks,
        pnl=pnl,
        liquidity=liquidity,
        short_minimum=np.where(live, config.short_option_minimum * forward, 0.0),
    )


def requirement(
    perp_notional: NDArray[np.float64],
    option_qty: NDArray[np.float64],
    risk: SeriesRisk,
    market: OptionsMarket,
    grid: Grid,
    config: OptionsMarginConfig,
) -> Requirement:
    """Margin of one book of perpetuals and options (USD).

    Parameters
    ----------
    perp_notional : ndarray, shape (n_assets,)
        Signed USD notional of the perpetual position per underlying (long positive).
    option_qty : ndarray, shape (n_series,)
        Signed units held of each series.
    """
    d = np.asarray(perp_notional, dtype=np.float64)
    q = np.asarray(option_qty, dtype=np.float64)
    liquidity = float(np.abs(d) @ market.liquidity_cost + np.abs(q) @ risk.liquidity)
    losses = liquidity - (d @ grid.returns + q @ risk.pnl)
    worst = int(np.argmax(losses))
    worst_loss = max(float(losses[worst]), 0.0)
    minimum = float(np.maximum(-q, 0.0) @ risk.short_minimum)
    maintenance = max(worst_loss, minimum)
    return Requirement(
        worst_loss=worst_loss,
        short_minimum=minimum,
        maintenance=maintenance,
        initial=config.initial_factor * maintenance,
        worst_scenario=worst,
    )


def net_greeks(
    perp_qty: NDArray[np.float64],
    option_qty: NDArray[np.float64],
    series: SeriesArrays,
    risk: SeriesRisk,
    market: OptionsMarket,
) -> dict[str, NDArray[np.float64]]:
    """Net Greeks of a book per underlying, in USD.

    ``delta_usd`` (perpetual notional plus ``q * delta * F``), ``gamma_usd`` (per 1% move,
    ``q * gamma * F^2 / 100``), ``vega_usd`` (per vol point, ``q * vega / 100``) and
    ``theta_usd`` (per day, ``q * theta / 365``).
    """
    n = len(market.price)
    f = market.price[series.asset]
    g = risk.greeks

    def per_asset(weights: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.bincount(series.asset, weights=weights, minlength=n)

    q = np.asarray(option_qty, dtype=np.float64)
    return {
        "delta_usd": np.asarray(perp_qty, dtype=np.float64) * market.price
        + per_asset(q * g.delta * f),
        "gamma_usd": per_asset(q * g.gamma * f * f / 100.0),
        "vega_usd": per_asset(q * g.vega / 100.0),
        "theta_usd": per_asset(q * g.theta / 365.0),
    }
