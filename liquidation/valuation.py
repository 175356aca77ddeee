"""Exact per-bucket valuation: equity, IM, MM, health and liquidation price.

A :class:`MarketView` freezes, for one engine time, what margin needs of each asset: the oracle
price, the guard status, the target and ramped multipliers and the liquidity and scenario
inputs. The functions here take positions and a view, so the waterfall can value hypothetical
positions (a planned partial liquidation) with the very same code as the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from liquidation.accounts import Bucket, Position
from liquidation.config import AssetConfig, EngineConfig
from liquidation.errors import StaleOracleError
from liquidation.margin import (
    initial_requirement,
    maintenance_requirement,
    position_fraction,
    ramped_multiplier,
    slippage_rate,
)
from liquidation.money import MICRO, QTY_SCALE, value
from liquidation.oracle import is_stale
from liquidation.portfolio import portfolio_requirement, scenario_returns
from liquidation.snapshot import target_multiplier
from liquidation.state import AssetState


@dataclass(frozen=True)
class AssetMargin:
    """Margin inputs of one asset at one time.

    ``target`` is paid by new risk; positions whose risk predates ``change_start_ms`` pay the
    ramped ``existing`` (always ``<= target``).
    """

    config: AssetConfig
    price: int | None
    guarded: bool
    guard_reason: str
    target: float
    existing: float
    change_start_ms: int
    sigma: float
    spread_bps: float
    slippage_bps: float
    standard_size_usd: float

    def multiplier_for(self, position: Position) -> float:
        """Multiplier of a position's maintenance (ramped if its risk is older)."""
        return self.target if position.risk_since_ms >= self.change_start_ms else self.existing

    def close_cost_rate(self, notional: int) -> float:
        """Modelled close-out slippage (fraction of notional) for ``notional`` micro-USD."""
        return slippage_rate(
            notional / MICRO,
            self.spread_bps,
            self.slippage_bps,
            self.standard_size_usd,
            self.config.max_slippage_bps,
        )


@dataclass(frozen=True)
class MarketView:
    """Per-asset margin inputs at ``ts_ms`` plus the portfolio scenario grid."""

    ts_ms: int
    config: EngineConfig
    assets: dict[str, AssetMargin]
    returns: NDArray[np.float64]
    vol_level: NDArray[np.float64]
    liquidity_cost: NDArray[np.float64]

    def price(self, symbol: str) -> int:
        """Oracle price of ``symbol``; raises :class:`StaleOracleError` if it has none."""
        price = self.assets[symbol].price
        if price is None:
            raise StaleOracleError(
                f"{symbol} has no accepted oracle price at ts={self.ts_ms}; "
                "publish a price update before trading or valuing it"
            )
        return price


def asset_margin(
    asset_state: AssetState, asset: AssetConfig, config: EngineConfig, ts_ms: int
) -> AssetMargin:
    """Build the :class:`AssetMargin` of one asset's oracle, snapshot and ramp state."""
    params = asset_state.params
    target = target_multiplier(params, asset, ts_ms)
    ramp_from, start = asset_state.ramp_from, asset_state.ramp_start_ms
    if params is not None and params.status in ("ok", "fallback") and ts_ms > params.valid_until_ms:
        # Expiry is a tightening that happens without an event: ramp to the fallback from
        # the value in force at the expiry instant.
        at_expiry = ramped_multiplier(
            ramp_from, params.multiplier, start, config.ramp_ms, params.valid_until_ms
        )
        ramp_from, start = at_expiry, params.valid_until_ms
    existing = ramped_multiplier(ramp_from, target, start, config.ramp_ms, ts_ms)
    stale = is_stale(asset_state.price_ms, ts_ms, config.oracle)
    usable = params is not None
    return AssetMargin(
        config=asset,
        price=asset_state.price,
        guarded=asset_state.guarded or stale,
        guard_reason="stale" if stale and not asset_state.guarded else asset_state.guard_reason,
        target=target,
        existing=existing,
        change_start_ms=start,
        sigma=max(params.sigma if usable else asset.fallback_sigma, asset.stress_sigma_floor),
        spread_bps=params.spread_bps if usable else asset.default_spread_bps,
        slippage_bps=params.slippage_bps if usable else asset.default_slippage_bps,
        standard_size_usd=params.standard_size_usd if usable else asset.standard_size_usd,
    )


def market_view(
    asset_states: dict[str, AssetState], config: EngineConfig, ts_ms: int
) -> MarketView:
    """Freeze the margin inputs of every asset at ``ts_ms``."""
    assets = {
        a.symbol: asset_margin(asset_states[a.symbol], a, config, ts_ms) for a in config.assets
    }
    sigmas = np.array([assets[s].sigma * assets[s].target for s in config.symbols])
    corr = config.portfolio.correlation
    correlation = np.eye(len(sigmas)) if corr is None else np.array(corr, dtype=np.float64)
    returns, vol_level = scenario_returns(sigmas, correlation, config.portfolio)
    liquidity = np.array(
        [
            slippage_rate(
                m.standard_size_usd,
                m.spread_bps,
                m.slippage_bps,
                m.standard_size_usd,
                m.config.max_slippage_bps,
            )
            for m in (assets[s] for s in config.symbols)
        ]
    )
    return MarketView(ts_ms, config, assets, returns, vol_level, liquidity)


def equity(balance: int, positions: Iterable[Position], view: MarketView) -> int:
    """Collateral plus unrealized PnL at oracle prices, micro-USD."""
    return balance + sum(value(p.lots, view.price(p.asset)) - p.cost for p in positions)


def notional(position: Position, view: MarketView) -> int:
    """Absolute notional of a position at its oracle price, micro-USD."""
    return abs(value(position.lots, view.price(position.asset)))


def maintenance_margin(positions: Iterable[Position], portfolio: bool, view: MarketView) -> int:
    """Maintenance requirement of a book (standard or portfolio), micro-USD."""
    positions = list(positions)
    standard = 0
    for p in positions:
        m = view.assets[p.asset]
        standard += maintenance_requirement(notional(p, view), m.multiplier_for(p), m.config)
    if not portfolio or not positions:
        return standard
    scaled, gross = _book_vectors(positions, view, ramped=True)
    signed, _ = _book_vectors(positions, view, ramped=False)
    total = float(gross.sum())
    mf = np.array([a.maintenance_fraction for a in view.config.assets])
    mean_mf = float(gross @ mf) / total if total > 0 else 0.0
    # Scaling one leg of a hedge by its ramp can raise the worst loss: cap it at the loss at
    # target multipliers, so the ramp never lifts MM above its target.
    worst = min(
        portfolio_requirement(
            scaled, gross, view.liquidity_cost, view.returns, view.vol_level, 0.0
        ),
        portfolio_requirement(
            signed, gross, view.liquidity_cost, view.returns, view.vol_level, 0.0
        ),
    )
    floor = view.config.portfolio.floor_fraction * standard / MICRO
    return math.ceil(max(worst * mean_mf, floor) * MICRO)


def initial_margin(
    positions: Iterable[Position],
    portfolio: bool,
    view: MarketView,
    long_oi_lots: dict[str, int],
) -> int:
    """Initial requirement of a book at target multipliers and current open interest."""
    positions = list(positions)
    standard = 0
    for p in positions:
        m = view.assets[p.asset]
        oi_usd = long_oi_lots.get(p.asset, 0) / QTY_SCALE * view.price(p.asset) / MICRO
        standard += initial_requirement(notional(p, view), m.target, oi_usd, m.config)
    if not portfolio or not positions:
        return standard
    scaled, gross = _book_vectors(positions, view, ramped=False)
    floor = view.config.portfolio.floor_fraction * standard / MICRO
    worst = portfolio_requirement(
        scaled, gross, view.liquidity_cost, view.returns, view.vol_level, floor
    )
    return math.ceil(worst * MICRO)


def liquidation_prices(bucket: Bucket, view: MarketView) -> dict[str, int | None]:
    """Price of each asset at which the bucket reaches maintenance, others held fixed.

    Solves ``E + q (P - P0) = MM_other + |q| P r`` with ``r`` the position's current
    maintenance fraction (size scaling frozen at today's size); None if no positive price
    does it (e.g. the position is fully collateralised). Standard margin only; for a
    portfolio bucket it is the standard-margin approximation.
    """
    result: dict[str, int | None] = {}
    eq = equity(bucket.balance, bucket.positions.values(), view)
    for symbol, position in bucket.positions.items():
        m = view.assets[symbol]
        price0 = view.price(symbol)
        n = notional(position, view)
        mm_other = maintenance_margin(
            [p for a, p in bucket.positions.items() if a != symbol], False, view
        )
        rate = (
            position_fraction(n / MICRO, m.multiplier_for(position), m.config)
            * m.config.maintenance_fraction
        )
        q = position.lots / QTY_SCALE
        denominator = q - abs(q) * rate
        numerator = (mm_other - eq + value(position.lots, price0)) / MICRO
        result[symbol] = None
        if denominator != 0:
            price = numerator / denominator
            if price > 0:
                result[symbol] = round(price * MICRO)
    return result


def _book_vectors(
    positions: list[Position], view: MarketView, ramped: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    symbols = view.config.symbols
    scaled = np.zeros(len(symbols))
    gross = np.zeros(len(symbols))
    for p in positions:
        i = symbols.index(p.asset)
        m = view.assets[p.asset]
        signed = value(p.lots, view.price(p.asset)) / MICRO
        ratio = m.multiplier_for(p) / m.target if ramped else 1.0
        scaled[i] += signed * ratio
        gross[i] += abs(signed)
    return scaled, gross
