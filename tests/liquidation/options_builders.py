"""Small option books and markets shared by the options tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from liquidation.options.config import OptionsMarginConfig
from liquidation.options.risk import (
    Grid,
    OptionsMarket,
    SeriesRisk,
    build_grid,
    requirement,
    series_risk,
)
from liquidation.options.series import SeriesArrays

YEAR_MS = 365 * 24 * 3_600_000


def market(
    prices=(60_000.0, 3_000.0),
    sigma=0.03,
    correlation=None,
    liquidity=0.0007,
) -> OptionsMarket:
    """Two underlyings with a 24h sigma ``sigma`` (multiplier 1) at ts 0."""
    n = len(prices)
    sigma_h = np.full(n, sigma)
    annual = sigma_h * np.sqrt(365.0)
    return OptionsMarket(
        ts_ms=0,
        price=np.array(prices, dtype=np.float64),
        sigma_horizon=sigma_h,
        sigma_annual=annual,
        forecast_vol=annual,
        liquidity_cost=np.full(n, liquidity),
        correlation=np.eye(n) if correlation is None else np.array(correlation),
    )


def series(rows: list[tuple[int, float, float, bool]]) -> SeriesArrays:
    """Series from (asset, strike USD, years to expiry, is_call) rows at ts 0."""
    return SeriesArrays(
        asset=np.array([r[0] for r in rows], dtype=np.int64),
        strike=np.array([r[1] for r in rows], dtype=np.float64),
        expiry_ms=np.array([round(r[2] * YEAR_MS) for r in rows], dtype=np.int64),
        is_call=np.array([r[3] for r in rows], dtype=bool),
    )


def evaluate(
    m: OptionsMarket,
    arrays: SeriesArrays,
    vols: np.ndarray,
    config: OptionsMarginConfig | None = None,
) -> tuple[Grid, SeriesRisk]:
    """Grid and series risk of ``arrays`` at flat vols ``vols``."""
    config = config or OptionsMarginConfig()
    grid = build_grid(m, config)
    return grid, series_risk(arrays, np.asarray(vols, dtype=np.float64), m, grid, config)


def margin(m, arrays, vols, perp_qty, option_qty, config=None):
    """The requirement of one book (perp quantities in units, option quantities in units)."""
    config = config or OptionsMarginConfig()
    grid, risk = evaluate(m, arrays, vols, config)
    return requirement(
        np.asarray(perp_qty, dtype=np.float64) * m.price,
        np.asarray(option_qty, dtype=np.float64),
        risk,
        m,
        grid,
        config,
    ), risk


def scaled_sigma(m: OptionsMarket, factor: float) -> OptionsMarket:
    """The same market with the published sigma scaled by ``factor``."""
    return replace(
        m,
        sigma_horizon=m.sigma_horizon * factor,
        sigma_annual=m.sigma_annual * factor,
    )
