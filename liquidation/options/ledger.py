"""The options ledger: listed series, matched option fills, surfaces and expiry settlement.

Event-sourced like the engine: every command validates its arguments, computes its event
(carrying every amount) and folds it; :meth:`OptionsLedger.replay` rebuilds an identical
ledger from the events. The book is matched: each fill has a buyer and a seller, so every
series' long quantity equals its short quantity, premiums and settlements move cash from one
account to another, and the ledger's cash sums to exactly zero at all times.

**Expiry is an event.** :meth:`OptionsLedger.settle` pays every position of the expiring
series its intrinsic value at the settlement price (integer micro-USD): the shorts pay what
their lots owe, truncated toward zero, and the longs share exactly that total pro rata to
their lots (largest remainder, :func:`liquidation.funding.funding_payments`, the rule that
also keeps funding zero-sum). Each account's value at the settlement price is conserved to
within one micro-USD, and the total exactly.

The ledger holds only option positions and their cash; an account's perpetuals, collateral
and their own margin stay in :class:`~liquidation.engine.Engine`, read through its public
queries (:func:`options_market`, :func:`account_risk`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liquidation import inputs
from liquidation.admission import require_priced
from liquidation.errors import InputError, UnknownAccountError
from liquidation.funding import funding_payments
from liquidation.money import MAX_PRICE, MICRO, QTY_SCALE, value
from liquidation.options.config import OptionsConfig
from liquidation.options.limits import Holding, Step, breaches, deleveraging_plan
from liquidation.options.risk import (
    OptionsMarket,
    Requirement,
    build_grid,
    net_greeks,
    requirement,
    series_risk,
)
from liquidation.options.series import OptionSeries, SeriesArrays
from liquidation.options.surface import VolSurface, annualised_sigma

#: Horizon used to annualise the fallback sigma when an asset has no snapshot yet.
DEFAULT_HORIZON_HOURS = 24.0


@dataclass(frozen=True)
class OptionEvent:
    """One ledger event: ``(seq, ts_ms, kind, data)`` with plain JSON data."""

    seq: int
    ts_ms: int
    kind: str
    data: dict[str, Any]


@dataclass
class OptionsLedger:
    """Option positions (lots per account and series), cash, surfaces and the event log."""

    symbols: tuple[str, ...]
    config: OptionsConfig = field(default_factory=OptionsConfig)
    series: list[OptionSeries] = field(default_factory=list)
    positions: dict[str, dict[OptionSeries, int]] = field(default_factory=dict)
    cash: dict[str, int] = field(default_factory=dict)
    surfaces: dict[str, VolSurface] = field(default_factory=dict)
    events: list[OptionEvent] = field(default_factory=list)
    clock_ms: int = 0

    # -- commands ------------------------------------------------------------------------
    def list_series(self, series: OptionSeries, *, ts: int) -> None:
        """List a series for trading (its underlying must be an engine asset)."""
        if series.underlying not in self.symbols:
            raise InputError(f"option underlying {series.underlying!r} is not an engine asset")
        if series in self.series:
            raise InputError(f"{series.name} is already listed")
        if series.expiry_ms <= ts:
            raise InputError(f"{series.name} expires at {series.expiry_ms}, not after ts={ts}")
        self._emit(ts, "series", {"series": series.to_dict()})

    def set_surface(self, asset: str, surface: VolSurface, *, ts: int) -> None:
        """Set the implied-vol surface of ``asset`` (an audited operator or feed update)."""
        if asset not in self.symbols:
            raise InputError(f"{asset!r} is not an engine asset")
        self._emit(ts, "surface", {"asset": asset, "surface": surface.to_dict()})

    def trade(
        self, buyer: str, seller: str, series: OptionSeries, lots: int, premium: int, *, ts: int
    ) -> None:
        """``buyer`` buys ``lots`` of ``series`` from ``seller`` at ``premium`` micro-USD/unit."""
        inputs.name(buyer, "buyer")
        inputs.name(seller, "seller")
        if buyer == seller:
            raise InputError(f"{buyer!r} cannot trade an option with itself")
        inputs.lots(lots, f"option quantity of {buyer!r}")
        if lots <= 0:
            raise InputError("option trade lots must be > 0 (the buyer is the long side)")
        inputs.integer(premium, "option premium", low=0, high=MAX_PRICE)
        if series not in self.series:
            raise InputError(f"{series.name} is not listed")
        if series.expiry_ms <= ts:
            raise InputError(f"{series.name} has expired (at {series.expiry_ms}); no trading")
        amount = value(lots, premium)
        self._emit(
            ts,
            "option_fill",
            {
                "series": series.to_dict(),
                "buyer": buyer,
                "seller": seller,
                "lots": lots,
                "premium": premium,
                "amount": amount,
            },
        )

    def record_breach(self, account: str, breaches: list[dict[str, Any]], *, ts: int) -> None:
        """Log a Greek-limit breach of ``account`` and the plan that answers it (audit)."""
        self._emit(ts, "greek_breach", {"account": account, "steps": breaches})

    def settle(self, expiry_ms: int, settlement: Mapping[str, int], *, ts: int) -> int:
        """Cash-settle every series expiring at ``expiry_ms``; returns the series settled.

        Parameters
        ----------
        expiry_ms : int
        settlement : mapping of str to int
            Settlement price (micro-USD) of each underlying with an expiring series (the
            engine's mark at expiry, or the venue's expiry TWAP).
        ts : int
            At or after ``expiry_ms``.
        """
        if ts < expiry_ms:
            raise InputError(f"settlement at ts={ts} before the expiry {expiry_ms}")
        expiring = sorted(s for s in self.series if s.expiry_ms == expiry_ms)
        settled = []
        for s in expiring:
            price = settlement.get(s.underlying)
            if price is None:
                raise InputError(f"no settlement price for {s.underlying} ({s.name})")
            inputs.price(price, f"{s.underlying} settlement price")
            holders = sorted(
                (account, book[s]) for account, book in self.positions.items() if book.get(s)
            )
            intrinsic = s.intrinsic(price)
            # Shorts pay (a rate of -1 makes the short side the payer), longs share exactly.
            payments = funding_payments(holders, intrinsic, -1.0) if intrinsic else []
            settled.append(
                {
                    "series": s.to_dict(),
                    "settlement": price,
                    "intrinsic": intrinsic,
                    "payments": [[a, amount] for a, amount in payments],
                    "closed": [[a, lots] for a, lots in holders],
                }
            )
        if settled:
            self._emit(ts, "expiry", {"expiry_ms": expiry_ms, "series": settled})
        return len(settled)

    # -- replay --------------------------------------------------------------------------------
    @classmethod
    def replay(
        cls, events: Iterable[OptionEvent], symbols: tuple[str, ...], config: OptionsConfig
    ) -> OptionsLedger:
        """Rebuild a ledger by folding ``events``."""
        ledger = cls(symbols, config)
        for event in events:
            ledger._apply(event)
        return ledger

    # -- queries -------------------------------------------------------------------------------
    def lots(self, account: str) -> dict[OptionSeries, int]:
        """Non-zero option positions of ``account``."""
        return {s: q for s, q in self.positions.get(account, {}).items() if q}

    def accounts(self) -> list[str]:
        """Every account with cash or positions in the ledger."""
        return sorted(set(self.cash) | set(self.positions))

    def vols(self, arrays: SeriesArrays, market: OptionsMarket) -> np.ndarray:
        """Implied vol of each series from its underlying's surface (or the forecast)."""
        years = arrays.years(market.ts_ms)
        result = np.empty(len(arrays))
        for a, symbol in enumerate(self.symbols):
            rows = np.flatnonzero(arrays.asset == a)
            if not rows.size:
                continue
            surface = self.surfaces.get(symbol) or VolSurface(
                atm_vol=min(5.0, max(0.05, float(market.forecast_vol[a])))
            )
            result[rows] = surface.vol(market.price[a], arrays.strike[rows], years[rows])
        return result

    # -- internals -----------------------------------------------------------------------------
    def _emit(self, ts: int, kind: str, data: dict[str, Any]) -> None:
        ts = inputs.timestamp(ts)
        if ts < self.clock_ms:
            raise InputError(f"options command at ts={ts} is before the clock {self.clock_ms}")
        event = OptionEvent(len(self.events), ts, kind, data)
        self._apply(event)

    def _apply(self, event: OptionEvent) -> None:
        data = event.data
        if event.kind == "series":
            self.series.append(_series(data["series"]))
        elif event.kind == "surface":
            self.surfaces[data["asset"]] = VolSurface(**data["surface"])
        elif event.kind == "option_fill":
            s = _series(data["series"])
            for account, sign in ((data["buyer"], 1), (data["seller"], -1)):
                book = self.positions.setdefault(account, {})
                book[s] = book.get(s, 0) + sign * data["lots"]
                if not book[s]:
                    del book[s]
                self.cash[account] = self.cash.get(account, 0) - sign * data["amount"]
        elif event.kind == "greek_breach":
            pass  # an audit record: the breach and the plan; the fills follow as their own events
        elif event.kind == "expiry":
            for item in data["series"]:
                s = _series(item["series"])
                for account, amount in item["payments"]:
                    self.cash[account] = self.cash.get(account, 0) + amount
                for account, _lots in item["closed"]:
                    self.positions[account].pop(s, None)
                self.series.remove(s)
        else:
            raise InputError(f"unknown options event kind {event.kind!r}")
        self.events.append(event)
        self.clock_ms = max(self.clock_ms, event.ts_ms)


def _series(data: Mapping[str, Any]) -> OptionSeries:
    return OptionSeries(
        underlying=data["underlying"],
        expiry_ms=data["expiry_ms"],
        strike=data["strike"],
        is_call=data["is_call"],
    )


# -- margin of an account across the engine and the ledger -------------------------------------
@dataclass(frozen=True)
class AccountRisk:
    """An account's combined equity, option margin, Greeks and Greek-limit plan (USD)."""

    equity: float
    option_value: float
    requirement: Requirement
    greeks: dict[str, dict[str, float]]
    plan: list[Step]

    @property
    def liquidatable(self) -> bool:
        """Equity below the maintenance of the combined book."""
        return self.equity < self.requirement.maintenance

    @property
    def breaches_limits(self) -> bool:
        """Any net Greek beyond its limit."""
        return bool(self.plan)


def options_market(engine: Any, ts: int | None = None) -> OptionsMarket:
    """Per-underlying option-margin inputs from an engine's public queries at ``ts``.

    The horizon sigma and the liquidity cost are those of perpetual portfolio margin
    (:meth:`Engine.margin_arrays`, :meth:`Engine.view`), the annualisation uses each
    snapshot's ``horizon_hours``.
    """
    arrays = engine.margin_arrays(ts)
    view = engine.view(ts)
    symbols = engine.config.symbols
    horizons = []
    for s in symbols:
        params = engine.state.assets[s].params
        horizons.append(params.horizon_hours if params is not None else DEFAULT_HORIZON_HOURS)
    forecast = np.array([view.assets[s].sigma for s in symbols])
    factor = np.array([math.sqrt(8760.0 / h) for h in horizons])
    corr = engine.config.portfolio.correlation
    return OptionsMarket(
        ts_ms=view.ts_ms,
        price=arrays.price,
        sigma_horizon=arrays.sigma,
        sigma_annual=arrays.sigma * factor,
        forecast_vol=np.array(
            [annualised_sigma(f, h) for f, h in zip(forecast, horizons, strict=True)]
        ),
        liquidity_cost=view.liquidity_cost,
        correlation=np.eye(len(symbols)) if corr is None else np.array(corr, dtype=np.float64),
    )


def account_risk(
    engine: Any, ledger: OptionsLedger, account: str, ts: int | None = None
) -> AccountRisk:
    """Equity, combined margin, net Greeks and Greek-limit plan of ``account``'s cross book.

    Equity is the engine's cross-bucket equity (collateral and perpetual PnL at mark) plus the
    ledger's option cash and the options' marks. The requirement is the joint grid of
    :func:`liquidation.options.risk.requirement` over the perpetuals of the cross bucket and
    every option of the account.
    """
    if account not in engine.state.buckets and account not in ledger.cash:
        raise UnknownAccountError(f"no account {account!r} in the engine or the options ledger")
    market = options_market(engine, ts)
    symbols = engine.config.symbols
    held = ledger.lots(account)
    series = sorted(held)
    arrays = SeriesArrays.of(series, symbols)
    grid = build_grid(market, ledger.config.margin)
    risk = series_risk(arrays, ledger.vols(arrays, market), market, grid, ledger.config.margin)
    qty = np.array([held[s] / QTY_SCALE for s in series], dtype=np.float64)
    perp_qty = np.zeros(len(symbols))
    bucket = engine.state.buckets.get(account)
    engine_equity = 0
    if bucket is not None:
        for symbol, position in bucket.positions.items():
            perp_qty[symbols.index(symbol)] = position.lots / QTY_SCALE
        engine_equity = engine.equity(account, ts)
    option_value = float(qty @ risk.value) if len(series) else 0.0
    req = requirement(perp_qty * market.price, qty, risk, market, grid, ledger.config.margin)
    net = net_greeks(perp_qty, qty, arrays, risk, market)
    greeks = {
        symbols[a]: {g: float(net[g][a]) for g in net}
        for a in range(len(symbols))
        if perp_qty[a] or (arrays.asset == a).any()
    }
    holdings = [
        Holding(f"perp:{symbols[a]}", symbols[a], perp_qty[a], perp_qty[a] * market.price[a], 0, 0)
        for a in np.flatnonzero(perp_qty)
    ]
    g = risk.greeks
    for i, s in enumerate(series):
        f = market.price[arrays.asset[i]]
        holdings.append(
            Holding(
                s.name,
                s.underlying,
                qty[i],
                qty[i] * g.delta[i] * f,
                qty[i] * g.gamma[i] * f * f / 100.0,
                qty[i] * g.vega[i] / 100.0,
            )
        )
    plan = (
        deleveraging_plan(holdings, ledger.config.limits)
        if breaches(holdings, ledger.config.limits)
        else []
    )
    equity = (engine_equity + ledger.cash.get(account, 0)) / MICRO + option_value
    return AccountRisk(equity, option_value, req, greeks, plan)


def settle_at_mark(engine: Any, ledger: OptionsLedger, expiry_ms: int, *, ts: int) -> int:
    """Settle the series expiring at ``expiry_ms`` at the engine's mark at ``ts``.

    Refused (nothing settles) while an underlying's oracle is stale or guarded: no option
    settles at a price the engine would not trade at.
    """
    view = engine.view(ts)
    underlyings = sorted({s.underlying for s in ledger.series if s.expiry_ms == expiry_ms})
    for symbol in underlyings:
        require_priced(view, symbol, f"settle the {symbol} options expiring at {expiry_ms}")
    return ledger.settle(expiry_ms, {s: view.price(s) for s in underlyings}, ts=ts)
