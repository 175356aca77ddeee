"""Exact per-bucket valuation: equity, IM, MM, health and liquidation price.

A :class:`MarketView` freezes, for one engine time, what margin needs of each asset: the
mark price (the guarded oracle plus a bounded basis, or the reference median after an
escalated guard), the guard status, the target multiplier and the ramp classes, and the
liquidity and scenario inputs. The functions here take positions and a view, so the
waterfall can value hypothetical positions (a planned partial liquidation) with the very same
code as the real ones.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from liquidation.accounts import Bucket, Position
from liquidation.config import AssetConfig, EngineConfig
from liquidation.errors import StaleOracleError
from liquidation.mark import decayed_basis, mark_price
from liquidation.money import MICRO, QTY_SCALE, value
from liquidation.options.engine_book import (
    DEFAULT_HORIZON_HOURS,
    OptionsView,
    options_market,
)
from liquidation.portfolio import portfolio_requirement, scenario_returns
from liquidation.rules.closeout import slippage_rate
from liquidation.rules.margin import (
    initial_requirement,
    liquidatable,
    maintenance_requirement,
    position_fraction,
)
from liquidation.rules.oracle_guard import is_stale, reference_price
from liquidation.rules.ramp import at_time, classes
from liquidation.state import AssetState

if TYPE_CHECKING:
    from liquidation.options.engine_book import OptionsState


@dataclass(frozen=True)
class AssetMargin:
    """Margin inputs of one asset at one time.

    ``price`` is the mark (what margin, equity and liquidation use), ``oracle`` the guarded
    index it derives from. ``target`` is paid by new risk; a position pays the multiplier of
    its ramp class (``class_since[k] <= risk_since < class_since[k + 1]`` pays
    ``class_mult[k]``, always ``<= target``; see :mod:`liquidation.rules.ramp`).
    """

    config: AssetConfig
    price: int | None
    oracle: int | None
    guarded: bool
    guard_reason: str
    target: float
    class_since: tuple[int, ...]
    class_mult: tuple[float, ...]
    sigma: float
    spread_bps: float
    slippage_bps: float
    standard_size_usd: float

    @property
    def existing(self) -> float:
        """Multiplier of the oldest positions (the ramp's base level)."""
        return self.class_mult[0]

    def multiplier_for(self, position: Position) -> float:
        """Maintenance multiplier of a position (its ramp class's)."""
        k = bisect.bisect_right(self.class_since, position.risk_since_ms) - 1
        return self.class_mult[k]

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
    """Per-asset margin inputs at ``ts_ms`` plus the portfolio scenario grid.

    ``options`` values the listed option series at this market (None when none is listed).
    """

    ts_ms: int
    config: EngineConfig
    assets: dict[str, AssetMargin]
    returns: NDArray[np.float64]
    vol_level: NDArray[np.float64]
    liquidity_cost: NDArray[np.float64]
    options: OptionsView | None = None

    def price(self, symbol: str) -> int:
        """Mark price of ``symbol``; raises :class:`StaleOracleError` if it has none."""
        price = self.assets[symbol].price
        if price is None:
            raise StaleOracleError(
                f"{symbol} has no accepted oracle price at ts={self.ts_ms}; "
                "publish a price update before trading or valuing it"
            )
        return price

    def oracle(self, symbol: str) -> int:
        """Guarded oracle (index) price of ``symbol``, the base of its mark."""
        oracle = self.assets[symbol].oracle
        if oracle is None:
            raise StaleOracleError(f"{symbol} has no accepted oracle price at ts={self.ts_ms}")
        return oracle


def asset_margin(
    asset_state: AssetState, asset: AssetConfig, config: EngineConfig, ts_ms: int
) -> AssetMargin:
    """Build the :class:`AssetMargin` of one asset's oracle, snapshot and ramp state."""
    params = asset_state.params
    ramp = at_time(
        asset_state.ramp,
        params,
        asset_state.trusted,
        asset,
        ts_ms,
        config.ramp_ms,
        config.max_ramp_classes,
    )
    since, multipliers = classes(ramp, ts_ms, config.ramp_ms)
    if asset_state.mark_source == "reference":
        median = reference_price(asset_state.references, ts_ms, config.oracle)
        guarded = median is None
        reason = "stale" if guarded else "reference"
        # Without a quorum the last primary price is shown, guarded (nothing acts on it).
        oracle = median if median is not None else asset_state.price
    else:
        oracle = asset_state.price
        stale = is_stale(asset_state.price_ms, ts_ms, config.oracle)
        guarded = asset_state.guarded or stale
        reason = "stale" if stale and not asset_state.guarded else asset_state.guard_reason
    basis = decayed_basis(asset_state.basis, asset_state.basis_ms, ts_ms, config.mark)
    usable = params is not None
    return AssetMargin(
        config=asset,
        price=mark_price(oracle, basis, config.mark) if oracle is not None else None,
        oracle=oracle,
        guarded=guarded,
        guard_reason=reason,
        target=ramp.target,
        class_since=since,
        class_mult=multipliers,
        sigma=max(params.sigma if usable else asset.fallback_sigma, asset.stress_sigma_floor),
        spread_bps=params.spread_bps if usable else asset.default_spread_bps,
        slippage_bps=params.slippage_bps if usable else asset.default_slippage_bps,
        standard_size_usd=params.standard_size_usd if usable else asset.standard_size_usd,
    )


def market_view(
    asset_states: dict[str, AssetState],
    config: EngineConfig,
    ts_ms: int,
    options: OptionsState | None = None,
) -> MarketView:
    """Freeze the margin inputs of every asset at ``ts_ms`` (and of the listed ``options``)."""
    assets = {
        a.symbol: asset_margin(asset_states[a.symbol], a, config, ts_ms) for a in config.assets
    }
    sigmas = np.array([assets[s].sigma * assets[s].target for s in config.symbols])
    returns, vol_level = scenario_returns(sigmas, _correlation(config), config.portfolio)
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
    option_view = None
    if options is not None and options.series:
        horizons = np.array(
            [
                p.horizon_hours
                if (p := asset_states[s].params) is not None
                else DEFAULT_HORIZON_HOURS
                for s in config.symbols
            ]
        )
        # An unpriced underlying gets a placeholder forward: every use of its series
        # requires a usable price first (nothing is valued at a guarded or missing price).
        prices = np.array([assets[s].price / MICRO if assets[s].price else 1.0
                           for s in config.symbols])  # fmt: skip
        market = options_market(
            prices,
            sigmas,
            np.array([assets[s].sigma for s in config.symbols]),
            horizons,
            liquidity,
            _correlation(config),
            ts_ms,
        )
        option_view = OptionsView(options, market, config.symbols, config.options)
    return MarketView(ts_ms, config, assets, returns, vol_level, liquidity, option_view)


@functools.lru_cache(maxsize=64)
def _correlation(config: EngineConfig) -> NDArray[np.float64]:
    corr = config.portfolio.correlation
    n = len(config.assets)
    return np.eye(n) if corr is None else np.array(corr, dtype=np.float64)


def equity(balance: int, positions: Iterable[Position], view: MarketView) -> int:
    """Collateral plus unrealized PnL at oracle prices, micro-USD."""
    return balance + sum(value(p.lots, view.price(p.asset)) - p.cost for p in positions)


def below_maintenance(bucket: Bucket, view: MarketView) -> bool:
    """The exact liquidation test: positions, no guarded leg, and equity below maintenance."""
    legs = valued_legs(bucket, view)
    if not legs or any(view.assets[a].guarded for a in legs):
        return False
    return liquidatable(bucket_equity(bucket, view), bucket_maintenance(bucket, view))


def with_asset(view: MarketView, symbol: str, margin: AssetMargin) -> MarketView:
    """``view`` with ``symbol``'s margin inputs replaced (a probed price): the options on it
    are repriced at the new mark, everything else is kept."""
    options = view.options
    if options is not None and margin.price is not None:
        prices = options.market.price.copy()
        prices[view.config.symbols.index(symbol)] = margin.price / MICRO
        market = dataclasses.replace(options.market, price=prices)
        options = OptionsView(options.state, market, options.symbols, options.config)
    return dataclasses.replace(view, assets={**view.assets, symbol: margin}, options=options)


# -- a whole bucket, perpetuals and options ------------------------------------------------------
def option_view(view: MarketView) -> OptionsView:
    """The view's options valuation (raises if no series is listed: nothing to value)."""
    if view.options is None:
        raise StaleOracleError(f"no option series is listed at ts={view.ts_ms}")
    return view.options


def valued_legs(bucket: Bucket, view: MarketView) -> set[str]:
    """Assets whose price values the bucket: its perpetuals and its options' underlyings."""
    legs = set(bucket.positions)
    if bucket.options:
        legs |= option_view(view).underlyings(bucket.options)
    return legs


def bucket_equity(bucket: Bucket, view: MarketView) -> int:
    """Collateral plus perpetual PnL plus the options' marked value, micro-USD."""
    eq = equity(bucket.balance, bucket.positions.values(), view)
    return eq + option_view(view).value(bucket.options) if bucket.options else eq


def bucket_maintenance(bucket: Bucket, view: MarketView) -> int:
    """Maintenance of a bucket: with options, the joint price x vol grid of its perpetuals
    and options (:mod:`liquidation.options.risk`, netting hedges and correlated
    underlyings); without, :func:`maintenance_margin`."""
    if bucket.options:
        return option_view(view).maintenance(bucket.options, bucket.positions.values())
    return maintenance_margin(bucket.positions.values(), bucket.portfolio, view)


def bucket_initial(bucket: Bucket, view: MarketView, long_oi_lots: dict[str, int]) -> int:
    """Initial margin of a bucket (with options: the joint grid times its initial factor)."""
    if bucket.options:
        return option_view(view).initial(bucket.options, bucket.positions.values())
    return initial_margin(bucket.positions.values(), bucket.portfolio, view, long_oi_lots)


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
