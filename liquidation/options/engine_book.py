"""Options inside the engine: the option state the event fold keeps, and its margin view.

The engine's event log carries five option event kinds, folded here and registered by
:mod:`liquidation.state` next to the perpetual handlers, so options persist, replay and
restart exactly like perpetuals (one SQLite log, one command = one transaction):

* ``option_series`` lists a series, ``option_surface`` sets an underlying's implied-vol
  surface (:mod:`liquidation.options.surface`);
* ``option_fill`` moves ``lots`` of a series from the seller to the buyer and the premium
  ``amount`` (micro-USD) from the buyer's cross-bucket balance to the seller's;
* ``option_expiry`` pays every holder of the expiring series its intrinsic value at the
  settlement price (shorts pay exactly what longs receive, zero-sum to the micro-USD) and
  closes the positions and the series: **expiry settlement is an engine event**;
* ``greek_breach`` records a Greek-limit breach and its delta-first plan (audit only).

Options are held by cross buckets only (:attr:`liquidation.accounts.Bucket.options`, lots by
series name, copied with the bucket on a fork), so premiums and
settlements are transfers between bucket balances and the engine's ledger identity needs no
new term. :class:`OptionsView` values them for one market view: marks, the joint price x vol
grid of :mod:`liquidation.options.risk` netting perpetuals and options across correlated
underlyings, and the combined requirement of a bucket.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from liquidation.money import MICRO, QTY_SCALE
from liquidation.options.config import OptionsConfig
from liquidation.options.limits import Holding
from liquidation.options.series import OptionSeries, SeriesArrays
from liquidation.options.surface import VolSurface, annualised_sigma

if TYPE_CHECKING:
    from liquidation.accounts import Position
    from liquidation.options.risk import Grid, OptionsMarket, Requirement, SeriesRisk

#: Horizon used to annualise the forecast when an asset has no snapshot yet.
DEFAULT_HORIZON_HOURS = 24.0

#: Event kinds of options and their required data fields (merged into the log's schema).
OPTION_EVENT_FIELDS: dict[str, frozenset[str]] = {
    "option_series": frozenset({"series"}),
    "option_surface": frozenset({"asset", "surface"}),
    "option_fill": frozenset({"series", "buyer", "seller", "lots", "premium", "amount", "reason"}),
    "option_expiry": frozenset({"expiry_ms", "series"}),
    "greek_breach": frozenset({"account", "steps"}),
}


def series_from(data: Mapping[str, Any]) -> OptionSeries:
    """An :class:`OptionSeries` from its event dict."""
    return OptionSeries(
        underlying=data["underlying"],
        expiry_ms=data["expiry_ms"],
        strike=data["strike"],
        is_call=data["is_call"],
    )


@dataclass
class OptionsState:
    """Listed series (by name) and implied-vol surfaces; the lots live on the buckets
    (:attr:`liquidation.accounts.Bucket.options`), so a fork copies them with the bucket."""

    series: dict[str, OptionSeries] = field(default_factory=dict)
    surfaces: dict[str, VolSurface] = field(default_factory=dict)
    # Bumped by every change of the series or of any option position (not by prices): the
    # engine's scan caches its option rows per version.
    version: int = 0

    def copy(self) -> OptionsState:
        """An independent copy (a fork plans on it)."""
        return OptionsState(
            series=dict(self.series), surfaces=dict(self.surfaces), version=self.version
        )

    def digest_payload(self) -> dict[str, Any]:
        """Canonical plain form (part of the engine's state digest)."""
        return {
            "series": sorted(self.series),
            "surfaces": {a: s.to_dict() for a, s in sorted(self.surfaces.items())},
        }


def open_interest(buckets: Iterable[Any]) -> dict[str, tuple[int, int]]:
    """(long lots, short lots) of every series held across ``buckets``."""
    found: dict[str, list[int]] = {}
    for bucket in buckets:
        for name, lots in bucket.options.items():
            side = found.setdefault(name, [0, 0])
            side[0 if lots > 0 else 1] += abs(lots)
    return {name: (long, short) for name, (long, short) in found.items()}


# -- the fold -----------------------------------------------------------------------------------
def _move_balance(state: Any, bucket_id: str, delta: int) -> None:
    bucket = state.buckets[bucket_id]
    bucket.balance += delta
    state.book.set_balance(bucket_id, bucket.balance)


def _on_series(state: Any, ts: int, data: dict[str, Any]) -> None:
    series = series_from(data["series"])
    state.options.series[series.name] = series
    state.options.version += 1


def _on_surface(state: Any, ts: int, data: dict[str, Any]) -> None:
    state.options.surfaces[data["asset"]] = VolSurface(**data["surface"])


def _on_fill(state: Any, ts: int, data: dict[str, Any]) -> None:
    name = series_from(data["series"]).name
    state.options.version += 1
    for account, sign in ((data["buyer"], 1), (data["seller"], -1)):
        book = state.buckets[account].options
        lots = book.get(name, 0) + sign * data["lots"]
        if lots:
            book[name] = lots
        else:
            book.pop(name, None)
        _move_balance(state, account, -sign * data["amount"])


def _on_expiry(state: Any, ts: int, data: dict[str, Any]) -> None:
    state.options.version += 1
    for item in data["series"]:
        name = series_from(item["series"]).name
        for account, amount in item["payments"]:
            _move_balance(state, account, amount)
        for account, _lots in item["closed"]:
            state.buckets[account].options.pop(name, None)
        state.options.series.pop(name, None)


def _on_breach(state: Any, ts: int, data: dict[str, Any]) -> None:
    return None  # an audit record; the closes follow as their own events


OPTION_HANDLERS: dict[str, Any] = {
    "option_series": _on_series,
    "option_surface": _on_surface,
    "option_fill": _on_fill,
    "option_expiry": _on_expiry,
    "greek_breach": _on_breach,
}


# -- valuation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Priced:
    """Every listed series priced at one market: marks, Greeks, grid PnL (USD per unit)."""

    names: tuple[str, ...]
    index: dict[str, int]
    arrays: SeriesArrays
    risk: SeriesRisk
    grid: Grid


class OptionsView:
    """Options valued at one :class:`~liquidation.valuation.MarketView`.

    Parameters
    ----------
    state : OptionsState
        The option state the view values (not copied: a view lives for one state version).
    market : OptionsMarket
        Per-underlying prices, sigmas, liquidity and correlation (engine asset order).
    symbols : tuple of str
    config : OptionsConfig
    """

    def __init__(
        self,
        state: OptionsState,
        market: OptionsMarket,
        symbols: tuple[str, ...],
        config: OptionsConfig,
    ) -> None:
        self.state = state
        self.market = market
        self.symbols = symbols
        self.config = config

    @functools.cached_property
    def priced(self) -> Priced:
        """Marks, Greeks and scenario PnL of every listed series (computed once per view)."""
        # Imported here: Black-76 needs scipy, which the perpetual core does not load until a
        # series is listed (tests/liquidation/test_liquidation_isolation.py).
        from liquidation.options.risk import build_grid, series_risk

        names = tuple(sorted(self.state.series))
        series = [self.state.series[n] for n in names]
        arrays = SeriesArrays.of(series, self.symbols)
        grid = build_grid(self.market, self.config.margin)
        risk = series_risk(arrays, self.vols(arrays), self.market, grid, self.config.margin)
        return Priced(names, {n: i for i, n in enumerate(names)}, arrays, risk, grid)

    def vols(self, arrays: SeriesArrays) -> NDArray[np.float64]:
        """Implied vol of each series: its underlying's surface, else the forecast, flat."""
        years = arrays.years(self.market.ts_ms)
        result = np.empty(len(arrays))
        for a, symbol in enumerate(self.symbols):
            rows = np.flatnonzero(arrays.asset == a)
            if not rows.size:
                continue
            surface = self.state.surfaces.get(symbol) or VolSurface(
                atm_vol=min(5.0, max(0.05, float(self.market.forecast_vol[a])))
            )
            result[rows] = surface.vol(self.market.price[a], arrays.strike[rows], years[rows])
        return result

    def underlyings(self, held: Mapping[str, int]) -> set[str]:
        """Underlyings of the options ``held`` (lots by series name)."""
        return {self.state.series[n].underlying for n in held}

    def mark(self, name: str) -> float:
        """Mark of one unit of series ``name`` (USD)."""
        priced = self.priced
        return float(priced.risk.value[priced.index[name]])

    def value(self, held: Mapping[str, int]) -> int:
        """Marked value of the options ``held``, micro-USD, rounded down (against the holder)."""
        if not held:
            return 0
        priced = self.priced
        total = sum(
            lots / QTY_SCALE * float(priced.risk.value[priced.index[n]])
            for n, lots in sorted(held.items())
        )
        return math.floor(total * MICRO)

    def requirement(self, held: Mapping[str, int], positions: Iterable[Position]) -> Requirement:
        """Joint requirement of perpetual ``positions`` and the options ``held``."""
        from liquidation.options.risk import requirement

        priced = self.priced
        qty = np.zeros(len(priced.names))
        for name, lots in held.items():
            qty[priced.index[name]] = lots / QTY_SCALE
        notional = np.zeros(len(self.symbols))
        for p in positions:
            a = self.symbols.index(p.asset)
            notional[a] += p.lots / QTY_SCALE * self.market.price[a]
        return requirement(notional, qty, priced.risk, self.market, priced.grid, self.config.margin)

    def maintenance(self, held: Mapping[str, int], positions: Iterable[Position]) -> int:
        """Combined maintenance, micro-USD, rounded up."""
        return math.ceil(self.requirement(held, positions).maintenance * MICRO)

    def initial(self, held: Mapping[str, int], positions: Iterable[Position]) -> int:
        """Combined initial margin, micro-USD, rounded up."""
        return math.ceil(self.requirement(held, positions).initial * MICRO)

    def holdings(self, held: Mapping[str, int], positions: Iterable[Position]) -> list[Holding]:
        """Every position of the bucket with its whole-position Greeks (USD)."""
        priced = self.priced
        g = priced.risk.greeks
        found = []
        for p in sorted(positions, key=lambda p: p.asset):
            a = self.symbols.index(p.asset)
            q = p.lots / QTY_SCALE
            found.append(Holding(f"perp:{p.asset}", p.asset, q, q * self.market.price[a], 0, 0))
        for name, lots in sorted(held.items()):
            i = priced.index[name]
            q = lots / QTY_SCALE
            f = self.market.price[priced.arrays.asset[i]]
            found.append(
                Holding(
                    name,
                    self.state.series[name].underlying,
                    q,
                    float(q * g.delta[i] * f),
                    float(q * g.gamma[i] * f * f / 100.0),
                    float(q * g.vega[i] / 100.0),
                )
            )
        return found


def options_market(
    prices: NDArray[np.float64],
    sigma_horizon: NDArray[np.float64],
    forecast_horizon: NDArray[np.float64],
    horizons_hours: NDArray[np.float64],
    liquidity_cost: NDArray[np.float64],
    correlation: NDArray[np.float64],
    ts_ms: int,
) -> OptionsMarket:
    """The option-margin inputs of one engine market view (USD prices, engine asset order).

    ``sigma_horizon`` is the horizon sigma times the target multiplier (floored), as the
    perpetual scan uses; ``forecast_horizon`` the published sigma alone; both annualised with
    each snapshot's horizon.
    """
    from liquidation.options.risk import OptionsMarket

    factor = np.sqrt(8760.0 / horizons_hours)
    return OptionsMarket(
        ts_ms=ts_ms,
        price=prices,
        sigma_horizon=sigma_horizon,
        sigma_annual=sigma_horizon * factor,
        forecast_vol=np.array(
            [
                annualised_sigma(float(f), float(h))
                for f, h in zip(forecast_horizon, horizons_hours, strict=True)
            ]
        ),
        liquidity_cost=liquidity_cost,
        correlation=correlation,
    )
